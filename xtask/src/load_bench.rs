//! `cargo xtask bench --serve`: many visitors at once against any OpenAI-compatible server —
//! this project's (started here, release build, its defaults) or another at `--url`
//! (llama.cpp's `llama-server -np 4`, say), with the same fixed Spanish questions, greedy,
//! 128-token answers (`ignore_eos`: every server writes the same number of tokens). One JSON line per concurrency, then one per turn of a five-turn
//! conversation whose first question carries a long text.

use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use wire::openai::{ChatCompletionRequest, DONE, StreamData, StreamOptions};
use wire::sse::SseDecoder;
use wire::{ChatMessage, Role};

use crate::e2e::{RunningServer, free_port, wait_until_healthy, wait_until_listening};

const ANSWER_TOKENS: u64 = 128;

/// What one streamed answer took.
struct Timed {
    /// From sending the request to the first text.
    first_token: Duration,
    /// From the first text to the last.
    streaming: Duration,
    started: Instant,
    ended: Instant,
    tokens: u64,
    prompt_tokens: u64,
    text: String,
}

pub fn run(url: Option<&str>, model: &str, concurrencies: &[usize]) -> Result<()> {
    let questions: Vec<String> = std::fs::read_to_string("xtask/bench/preguntas.txt")?
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(str::to_owned)
        .collect();
    let (_server, base, server_name) = match url {
        Some(url) => (None, url.trim_end_matches('/').to_owned(), url.to_owned()),
        None => {
            let (server, base) = start_release_server(model)?;
            (Some(server), base, "vitrina".to_owned())
        }
    };
    for &concurrent in concurrencies {
        let answers = at_once(&base, &questions, concurrent)?;
        println!("{}", concurrency_line(&answers, concurrent, &server_name));
    }
    conversation(&base, &questions, &server_name)
}

fn start_release_server(model: &str) -> Result<(RunningServer, String)> {
    crate::build_release_server()?;
    let port = free_port()?;
    let data_dir = Path::new("target/bench-serve").join(format!("data-{port}"));
    let models = std::env::var_os("VITRINA_MODEL_CACHE")
        .unwrap_or_else(|| crate::toolchain::cache_dir().join("models").into());
    let child = std::process::Command::new(Path::new("target/release").join(crate::SERVER_BINARY))
        .args([
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--model",
            model,
            // Its answers run to ANSWER_TOKENS (`ignore_eos`), which only a bench server takes.
            "--bench",
        ])
        .arg("--data-dir")
        .arg(&data_dir)
        .env("VITRINA_MODEL_CACHE", models)
        .stdout(std::process::Stdio::null())
        .spawn()
        .context("cannot start the release server")?;
    let mut server = RunningServer(child);
    wait_until_listening(&mut server, port)?;
    let base = format!("http://127.0.0.1:{port}");
    wait_until_healthy(&mut server, &base)?;
    Ok((server, base))
}

/// `concurrent` visitors, each from an address of its own, ask at the same moment.
fn at_once(base: &str, questions: &[String], concurrent: usize) -> Result<Vec<Timed>> {
    let threads: Vec<_> = (0..concurrent)
        .map(|visitor| {
            let question = questions[visitor % questions.len()].clone();
            let base = base.to_owned();
            std::thread::spawn(move || {
                let messages = [ChatMessage::new(Role::User, question)];
                stream_chat(&base, &messages, visitor)
            })
        })
        .collect();
    threads
        .into_iter()
        .map(|thread| {
            thread
                .join()
                .map_err(|_| anyhow::anyhow!("a visitor's thread panicked"))?
        })
        .collect()
}

/// One conversation of five turns; the first question carries a long text, so the fifth
/// turn's prompt is about a thousand tokens.
fn conversation(base: &str, questions: &[String], server: &str) -> Result<()> {
    let text = std::fs::read_to_string("engine/tests/data/texto_es.txt")?;
    let mut messages = Vec::new();
    for turn in 1..=5 {
        let question = if turn == 1 {
            format!("Lee este texto y resume su idea principal.\n\n{text}")
        } else {
            questions[turn % questions.len()].clone()
        };
        messages.push(ChatMessage::new(Role::User, question));
        let answer = stream_chat(base, &messages, 0)?;
        println!(
            "{}",
            serde_json::json!({
                "case": "multi_turn", "turn": turn, "prompt_tokens": answer.prompt_tokens,
                "ttft_ms": millis(answer.first_token), "server": server,
            })
        );
        messages.push(ChatMessage::new(Role::Assistant, answer.text));
    }
    Ok(())
}

fn stream_chat(base: &str, messages: &[ChatMessage], visitor: usize) -> Result<Timed> {
    let request = ChatCompletionRequest {
        messages: messages.to_vec(),
        temperature: Some(0.0),
        max_tokens: Some(ANSWER_TOKENS),
        seed: Some(1),
        ignore_eos: true,
        stream: true,
        stream_options: Some(StreamOptions {
            include_usage: true,
        }),
        ..ChatCompletionRequest::default()
    };
    let started = Instant::now();
    // A documentation address (TEST-NET-3) per visitor: the per-visitor limits count them
    // apart, as they would real visitors behind the Space's proxy.
    let response = ureq::post(&format!("{base}/v1/chat/completions"))
        .set(
            "X-Forwarded-For",
            &format!("203.0.113.{}", visitor % 250 + 1),
        )
        .send_json(serde_json::to_value(&request)?)
        .with_context(|| format!("{base}/v1/chat/completions"))?;
    let mut reader = response.into_reader();
    let mut decoder = SseDecoder::new();
    let (mut first, mut last, mut chunks, mut usage, mut text) =
        (None, None, 0, None, String::new());
    let mut buffer = [0u8; 8192];
    'stream: loop {
        let read = reader.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        for data in decoder.push(&buffer[..read]) {
            if data == DONE {
                break 'stream;
            }
            match serde_json::from_str::<StreamData>(&data)? {
                StreamData::Error(body) => bail!("the server refused: {}", body.error.message),
                StreamData::Chunk(chunk) => {
                    if let Some(piece) = chunk.text() {
                        let now = Instant::now();
                        first.get_or_insert(now);
                        last = Some(now);
                        chunks += 1;
                        text.push_str(piece);
                    }
                    usage = chunk.usage.or(usage);
                }
            }
        }
    }
    let (Some(first), Some(last)) = (first, last) else {
        bail!("the answer had no text");
    };
    Ok(Timed {
        first_token: first - started,
        streaming: last - first,
        started,
        ended: last,
        tokens: usage.map_or(chunks, |usage| usage.completion_tokens as u64),
        prompt_tokens: usage.map_or(0, |usage| usage.prompt_tokens as u64),
        text,
    })
}

fn concurrency_line(answers: &[Timed], concurrent: usize, server: &str) -> serde_json::Value {
    let tokens: u64 = answers.iter().map(|answer| answer.tokens).sum();
    let begin = answers.iter().map(|answer| answer.started).min();
    let end = answers.iter().map(|answer| answer.ended).max();
    let wall = match (begin, end) {
        (Some(begin), Some(end)) => (end - begin).as_secs_f64(),
        _ => 0.0,
    };
    let stream_speeds: Vec<f64> = answers
        .iter()
        .map(|answer| {
            answer.tokens.saturating_sub(1) as f64 / answer.streaming.as_secs_f64().max(1e-9)
        })
        .collect();
    let first_tokens: Vec<f64> = answers
        .iter()
        .map(|answer| millis(answer.first_token))
        .collect();
    serde_json::json!({
        "concurrent": concurrent,
        "aggregate_tok_s": round(tokens as f64 / wall.max(1e-9)),
        "stream_tok_s_p50": round(percentile(&stream_speeds, 50.0)),
        "stream_tok_s_p95": round(percentile(&stream_speeds, 95.0)),
        "ttft_ms_p50": round(percentile(&first_tokens, 50.0)),
        "ttft_ms_p95": round(percentile(&first_tokens, 95.0)),
        "ttft_ms_max": round(first_tokens.iter().copied().fold(0.0, f64::max)),
        "server": server,
    })
}

/// Nearest-rank percentile.
fn percentile(values: &[f64], percent: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank =
        ((percent / 100.0 * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len().max(1));
    sorted.get(rank - 1).copied().unwrap_or(0.0)
}

fn millis(duration: Duration) -> f64 {
    round(duration.as_secs_f64() * 1000.0)
}

fn round(value: f64) -> f64 {
    (value * 10.0).round() / 10.0
}
