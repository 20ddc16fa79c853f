//! Feedback storage and exports: what is acknowledged is on disk (even after `kill -9`), many
//! visitors at once lose nothing, and the exports give exactly the expected lines to the team
//! only.

use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use server::receipts::Receipts;

mod common;

use server::facts::Facts;
use server::feedback::FeedbackStore;
use server::feedback_api::FeedbackApi;
use wire::feedback::{
    AnswerBackend, AnswerClaim, AnswerReport, Provenance, Rating, Stored, WireMessage,
};

/// The key of the tests' in-process servers.
static RECEIPTS: LazyLock<Arc<Receipts>> = LazyLock::new(|| Arc::new(Receipts::ephemeral()));

/// Gives `report` the receipt a server with `receipts` (and no model file) would have given.
fn signed(mut report: AnswerReport, receipts: &Receipts) -> AnswerReport {
    report.receipt = None;
    let receipt = receipts.sign(&AnswerClaim::of_report(&report, ""));
    report.receipt = Some(receipt);
    report
}

const TOKEN: &str = "s3cret-admin-token";

fn report(
    answer_key: &str,
    turn_key: &str,
    question: &str,
    entrada: Option<&str>,
    answer: &str,
    rating: Rating,
) -> AnswerReport {
    let content = wire::feedback::question_content(question, entrada);
    let report = AnswerReport {
        answer_key: answer_key.into(),
        conversation: "conversation-1".into(),
        turn_key: turn_key.into(),
        messages: vec![
            WireMessage {
                role: "system".into(),
                content: "Eres útil.".into(),
            },
            WireMessage {
                role: "user".into(),
                content,
            },
        ],
        pregunta: question.into(),
        entrada: entrada.map(Into::into),
        respuesta: answer.into(),
        rating,
        comment: None,
        provenance: Provenance {
            backend: AnswerBackend::Server,
            temperature: 0.7,
            top_p: 0.9,
            max_tokens: 64,
            seed: 7,
            ..Provenance::default()
        },
        receipt: None,
    };
    signed(report, &RECEIPTS)
}

fn facts(store: FeedbackStore) -> Arc<Facts> {
    common::facts(
        server::inference::Inference::new(),
        common::browser_smollm2(),
        Ok(Arc::new(store)),
        Arc::clone(&RECEIPTS),
    )
}

/// The feedback routes on a real loopback socket; returns the base URL.
async fn serve(facts: Arc<Facts>, admin_token: Option<&str>) -> String {
    let api = Arc::new(FeedbackApi {
        facts: Arc::clone(&facts),
        admin_token: admin_token.map(Into::into),
        idioma: "es".into(),
        trusted_proxies: space::Limits::default().trusted_proxies,
        per_minute: server::client::PerMinute::new(10_000),
        dpo_pairs_per_question: 3,
        line: common::api(Arc::clone(&facts.inference), common::roomy_limits()).scheduler(),
        limits: common::roomy_limits(),
        chat: space::ChatDefaults::default(),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, server::feedback_api::routes(api))
            .await
            .unwrap()
    });
    format!("http://{address}")
}

#[tokio::test]
async fn exports_give_exact_lines_for_known_feedback_and_only_to_the_team() {
    let dir = tempfile::tempdir().unwrap();
    let base = serve(facts(FeedbackStore::open(dir.path()).unwrap()), Some(TOKEN)).await;
    let client = reqwest::Client::new();
    let feedback = [
        // First question: liked the second try; the first was regenerated away, the third disliked.
        report(
            "answer-a1",
            "turn-aaaa",
            "¿Qué es el ODS 4?",
            None,
            "Uno sobre pobreza.",
            Rating::None,
        ),
        report(
            "answer-a2",
            "turn-aaaa",
            "¿Qué es el ODS 4?",
            None,
            "Educación de calidad.",
            Rating::Up,
        ),
        report(
            "answer-a3",
            "turn-aaaa",
            "¿Qué es el ODS 4?",
            None,
            "No sé.",
            Rating::Down,
        ),
        // Second: only disliked — no corpus row, no pair.
        report(
            "answer-b1",
            "turn-bbbb",
            "Hola",
            None,
            "Adiós",
            Rating::Down,
        ),
        // Third: liked, with a context, quotes and a newline in the answer.
        report(
            "answer-c1",
            "turn-cccc",
            "Resume el texto.",
            Some("Texto \"largo\"."),
            "Un texto\nlargo.",
            Rating::Up,
        ),
    ];
    for answer in &feedback {
        let response = client
            .post(format!("{base}/v1/feedback"))
            .json(answer)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
        let stored: Stored = response.json().await.unwrap();
        assert_eq!(stored.permalink, format!("/respuesta/{}", stored.id));
    }
    // Changing one's mind updates the row rather than adding one.
    let mut changed = feedback[3].clone();
    changed.rating = Rating::Down;
    changed.comment = Some("Respuesta sin sentido".into());
    assert_eq!(
        client
            .post(format!("{base}/v1/feedback"))
            .json(&changed)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    let export = |path: &'static str, token: Option<&'static str>| {
        let (client, base) = (client.clone(), base.clone());
        async move {
            let mut request = client.get(format!("{base}{path}"));
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            let response = request.send().await.unwrap();
            (
                response.status().as_u16(),
                response
                    .headers()
                    .get("www-authenticate")
                    .map(|value| value.to_str().unwrap().to_owned()),
                response.text().await.unwrap(),
            )
        }
    };
    let (status, _, corpus) = export("/v1/export/corpus.jsonl", Some(TOKEN)).await;
    assert_eq!(status, 200);
    assert_eq!(
        corpus,
        concat!(
            r#"{"pregunta":"¿Qué es el ODS 4?","entrada":"","respuesta":"Educación de calidad.","idioma":"es","messages":[{"role":"system","content":"Eres útil."},{"role":"user","content":"¿Qué es el ODS 4?"},{"role":"assistant","content":"Educación de calidad."}]}"#,
            "\n",
            r#"{"pregunta":"Resume el texto.","entrada":"Texto \"largo\".","respuesta":"Un texto\nlargo.","idioma":"es","messages":[{"role":"system","content":"Eres útil."},{"role":"user","content":"Resume el texto.\n\nTexto \"largo\"."},{"role":"assistant","content":"Un texto\nlargo."}]}"#,
            "\n",
        )
    );
    let (status, _, dpo) = export("/v1/export/dpo.jsonl", Some(TOKEN)).await;
    assert_eq!(status, 200);
    assert_eq!(
        dpo,
        concat!(
            r#"{"prompt":[{"role":"system","content":"Eres útil."},{"role":"user","content":"¿Qué es el ODS 4?"}],"chosen":[{"role":"assistant","content":"Educación de calidad."}],"rejected":[{"role":"assistant","content":"Uno sobre pobreza."}]}"#,
            "\n",
            r#"{"prompt":[{"role":"system","content":"Eres útil."},{"role":"user","content":"¿Qué es el ODS 4?"}],"chosen":[{"role":"assistant","content":"Educación de calidad."}],"rejected":[{"role":"assistant","content":"No sé."}]}"#,
            "\n",
        )
    );
    // KTO: every rated answer, liked or not; the unrated first try left out. The prompt is the
    // whole conversation the model read (the system prompt, the question with its context).
    let (status, _, kto) = export("/v1/export/kto.jsonl", Some(TOKEN)).await;
    assert_eq!(status, 200);
    assert_eq!(
        kto,
        concat!(
            r#"{"prompt":[{"role":"system","content":"Eres útil."},{"role":"user","content":"¿Qué es el ODS 4?"}],"completion":[{"role":"assistant","content":"Educación de calidad."}],"label":true}"#,
            "\n",
            r#"{"prompt":[{"role":"system","content":"Eres útil."},{"role":"user","content":"¿Qué es el ODS 4?"}],"completion":[{"role":"assistant","content":"No sé."}],"label":false}"#,
            "\n",
            r#"{"prompt":[{"role":"system","content":"Eres útil."},{"role":"user","content":"Hola"}],"completion":[{"role":"assistant","content":"Adiós"}],"label":false}"#,
            "\n",
            r#"{"prompt":[{"role":"system","content":"Eres útil."},{"role":"user","content":"Resume el texto.\n\nTexto \"largo\"."}],"completion":[{"role":"assistant","content":"Un texto\nlargo."}],"label":true}"#,
            "\n",
        )
    );
    for path in [
        "/v1/export/corpus.jsonl",
        "/v1/export/dpo.jsonl",
        "/v1/export/kto.jsonl",
    ] {
        let (status, challenge, body) = export(path, None).await;
        assert_eq!(
            (status, challenge.as_deref()),
            (401, Some("Bearer")),
            "{body}"
        );
        assert!(body.contains("VITRINA_ADMIN_TOKEN"), "{body}");
        let (status, _, _) = export(path, Some("s3cret-admin-tokeN")).await;
        assert_eq!(status, 401);
    }
    // The permalink's data, with the comment and the model's provenance.
    let stored: serde_json::Value = client
        .post(format!("{base}/v1/feedback"))
        .json(&changed)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let answer: serde_json::Value = client
        .get(format!(
            "{base}/v1/feedback/{}",
            stored["id"].as_str().unwrap()
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["comment"], "Respuesta sin sentido");
    assert_eq!(answer["provenance"]["seed"], 7);
    assert_eq!(
        client
            .get(format!("{base}/v1/feedback/0000000000000000"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
}

#[tokio::test]
async fn without_an_admin_token_exports_are_disabled_and_say_how_to_enable_them() {
    let dir = tempfile::tempdir().unwrap();
    let base = serve(facts(FeedbackStore::open(dir.path()).unwrap()), None).await;
    let response = reqwest::Client::new()
        .get(format!("{base}/v1/export/corpus.jsonl"))
        .bearer_auth("anything")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("set the VITRINA_ADMIN_TOKEN secret")
    );
}

#[tokio::test]
async fn bad_feedback_is_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let base = serve(facts(FeedbackStore::open(dir.path()).unwrap()), Some(TOKEN)).await;
    let client = reqwest::Client::new();
    let mut bad_key = report("x", "turn-aaaa", "Hola", None, "Hola", Rating::Up);
    bad_key.answer_key = "<script>".into();
    let mut no_question = report("answer-zz", "turn-aaaa", "Hola", None, "Hola", Rating::Up);
    no_question.messages.pop();
    for (body, expected) in [
        (serde_json::to_value(&bad_key).unwrap(), "answer_key"),
        (
            serde_json::to_value(&no_question).unwrap(),
            "must end with the visitor's question",
        ),
        (serde_json::json!({"rating": "up"}), "missing field"),
    ] {
        let response = client
            .post(format!("{base}/v1/feedback"))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        assert!(status == 400 || status == 422, "{status} {text}");
        assert!(text.contains(expected), "{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_clients_at_once_lose_no_row() {
    let dir = tempfile::tempdir().unwrap();
    let base = serve(facts(FeedbackStore::open(dir.path()).unwrap()), Some(TOKEN)).await;
    let posts = (0..50).map(|client_number| {
        let base = base.clone();
        tokio::spawn(async move {
            // A connection of its own, as fifty visitors would have.
            let client = reqwest::Client::new();
            let answer = report(
                &format!("answer-{client_number:04}"),
                &format!("turn-{client_number:04}"),
                "¿Y bien?",
                None,
                &format!("Respuesta {client_number}"),
                Rating::Up,
            );
            let response = client
                .post(format!("{base}/v1/feedback"))
                .json(&answer)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
            response.json::<Stored>().await.unwrap().id
        })
    });
    let mut ids: Vec<String> = futures_util::future::join_all(posts)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 50);
    let mut stored = Vec::new();
    FeedbackStore::open(dir.path())
        .unwrap()
        .each(server::feedback::Order::Stored, |answer| {
            stored.push(answer);
            true
        })
        .unwrap();
    assert_eq!(stored.len(), 50);
    let mut answers: Vec<&str> = stored
        .iter()
        .map(|answer| answer.report.respuesta.as_str())
        .collect();
    answers.sort_unstable();
    let mut expected: Vec<String> = (0..50)
        .map(|number| format!("Respuesta {number}"))
        .collect();
    expected.sort();
    assert_eq!(answers, expected);
}

/// The real binary, killed with SIGKILL right after it acknowledged the last 👍.
#[test]
fn acknowledged_feedback_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let repository = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_vitrina"))
        .current_dir(repository)
        .args(["--no-model", "--port", &port.to_string(), "--data-dir"])
        .arg(dir.path())
        .env(
            "VITRINA_MODEL_CACHE",
            std::env::var_os("VITRINA_MODEL_CACHE")
                .unwrap_or_else(|| format!("{repository}/model-cache").into()),
        )
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let acknowledged = runtime.block_on(async {
        let client = reqwest::Client::new();
        let started = Instant::now();
        while client.get(format!("{base}/health")).send().await.is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the server did not start"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut acknowledged = Vec::new();
        for number in 0..20 {
            // Signed with the key the server keeps in its data folder.
            let answer = signed(
                report(
                    &format!("answer-{number:04}"),
                    "turn-kill",
                    "¿Sigue ahí?",
                    None,
                    &format!("Sí, {number}"),
                    Rating::Up,
                ),
                &Receipts::open(dir.path()),
            );
            let response = client
                .post(format!("{base}/v1/feedback"))
                .json(&answer)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
            acknowledged.push(response.json::<Stored>().await.unwrap().id);
        }
        acknowledged
    });
    child.kill().unwrap(); // SIGKILL: no shutdown, no flush.
    child.wait().unwrap();
    let stored = FeedbackStore::open(dir.path()).unwrap();
    for id in &acknowledged {
        let answer = stored
            .get(id)
            .unwrap()
            .unwrap_or_else(|| panic!("acknowledged answer {id} was lost"));
        assert_eq!(answer.report.rating, Rating::Up);
    }
}

#[tokio::test]
async fn a_question_answered_many_times_gives_at_most_its_share_of_pairs() {
    let dir = tempfile::tempdir().unwrap();
    // dpo_pairs_per_question is 3 in these tests.
    let base = serve(facts(FeedbackStore::open(dir.path()).unwrap()), Some(TOKEN)).await;
    let client = reqwest::Client::new();
    let ratings = [
        Rating::Up,
        Rating::Down,
        Rating::None,
        Rating::Up,
        Rating::Down,
    ];
    for (number, rating) in ratings.into_iter().enumerate() {
        let answer = report(
            &format!("answer-m{number}"),
            "turn-many",
            "¿Otra vez?",
            None,
            &format!("Intento {number}"),
            rating,
        );
        let response = client
            .post(format!("{base}/v1/feedback"))
            .json(&answer)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    let dpo = client
        .get(format!("{base}/v1/export/dpo.jsonl"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        dpo,
        concat!(
            r#"{"prompt":[{"role":"system","content":"Eres útil."},{"role":"user","content":"¿Otra vez?"}],"chosen":[{"role":"assistant","content":"Intento 0"}],"rejected":[{"role":"assistant","content":"Intento 1"}]}"#,
            "\n",
            r#"{"prompt":[{"role":"system","content":"Eres útil."},{"role":"user","content":"¿Otra vez?"}],"chosen":[{"role":"assistant","content":"Intento 0"}],"rejected":[{"role":"assistant","content":"Intento 2"}]}"#,
            "\n",
            r#"{"prompt":[{"role":"system","content":"Eres útil."},{"role":"user","content":"¿Otra vez?"}],"chosen":[{"role":"assistant","content":"Intento 0"}],"rejected":[{"role":"assistant","content":"Intento 4"}]}"#,
            "\n",
        ),
        "2 liked × 3 others would be 6 pairs"
    );
}

#[tokio::test]
async fn browser_answers_are_stored_as_such_and_exported_only_when_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let facts = facts(FeedbackStore::open(dir.path()).unwrap());
    facts.browser_model.fetch();
    let base = serve(facts, Some(TOKEN)).await;
    let client = reqwest::Client::new();
    let mut in_browser = report(
        "answer-w1",
        "turn-wasm",
        "¿Y sin servidor?",
        None,
        "(made below)",
        Rating::Up,
    );
    in_browser.provenance.backend = AnswerBackend::Browser;
    in_browser.respuesta =
        common::made_in_browser(&in_browser.chat_messages(), &in_browser.chat_params());
    // A receipt from the chat API is the server model's word: not the browser's.
    let response = client
        .post(format!("{base}/v1/feedback"))
        .json(&in_browser)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let id = response.json::<Stored>().await.unwrap().id;
    let stored: serde_json::Value = client
        .get(format!("{base}/v1/feedback/{id}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stored["provenance"]["backend"], "browser");
    assert_eq!(stored["provenance"]["model"], "smollm2-135m");
    assert_eq!(
        stored["provenance"]["sha256"],
        engine::catalog::smollm2_135m().sha256
    );
    assert!(stored.get("receipt").is_none(), "{stored}");
    let corpus = |query: &'static str| {
        let (client, base) = (client.clone(), base.clone());
        async move {
            let response = client
                .get(format!("{base}/v1/export/corpus.jsonl{query}"))
                .bearer_auth(TOKEN)
                .send()
                .await
                .unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        }
    };
    assert_eq!(corpus("").await, (200, String::new()));
    let (status, lines) = corpus("?include_browser=true").await;
    assert_eq!(status, 200);
    let rows: Vec<serde_json::Value> = lines
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(
        rows,
        [serde_json::json!({
            "pregunta": "¿Y sin servidor?",
            "entrada": "",
            "respuesta": in_browser.respuesta,
            "idioma": "es",
            "messages": [
                {"role": "system", "content": "Eres útil."},
                {"role": "user", "content": "¿Y sin servidor?"},
                {"role": "assistant", "content": in_browser.respuesta},
            ],
        })]
    );
    let (status, body) = corpus("?everything=1").await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("include_browser"), "{body}");
}
