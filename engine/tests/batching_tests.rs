//! Many answers at once, on a real model (SmolLM2, our llama kernels on the CPU): an answer
//! decoded in a batch, beside others joining and leaving, is the very answer it gets alone; an
//! answer continued from a kept prefix is the one a cold start gives; an edited earlier turn
//! never reuses what followed the edit; and the kept prefixes stay within their budget.

use std::fs::File;
use std::io::BufReader;

use engine::{
    Answer, ChatMessage, ChatModel, GenerateParams, LoadOptions, Role, SamplingParams, catalog,
    load_chat_model,
};

mod common;

fn smollm2(kept_prefix_bytes: usize) -> ChatModel {
    let path = common::fetch(&catalog::smollm2_135m());
    let options = LoadOptions {
        // Q4_1 rewritten as Q8_0: the server's path, with the two-row prompt kernel.
        requantize: true,
        kept_prefix_bytes,
        ..LoadOptions::default()
    };
    let mut reader = BufReader::new(File::open(&path).unwrap());
    load_chat_model(&mut reader, "SmolLM2", &options, &engine::Device::Cpu).unwrap()
}

/// A fixed number of greedy tokens: every answer runs its whole length, so batches keep their
/// size and answers of different lengths overlap.
fn fixed(max_tokens: usize) -> GenerateParams {
    GenerateParams {
        sampling: SamplingParams::greedy(),
        max_tokens,
        ignore_eos: true,
        ..GenerateParams::default()
    }
}

fn prompt(chat: &ChatModel, messages: &[ChatMessage]) -> Vec<u32> {
    chat.prompter
        .prompt_ids(messages, &GenerateParams::default())
        .unwrap()
}

fn user(text: &str) -> ChatMessage {
    ChatMessage::new(Role::User, text)
}

fn alone(chat: &mut ChatModel, prompt_ids: &[u32], params: &GenerateParams) -> String {
    chat.generate_from_ids(prompt_ids, params, &mut |_| engine::Flow::Continue)
        .unwrap()
        .text
}

/// Steps every answer together until all have ended, collecting each one's text; `leave`
/// says, after each step, which answers leave the batch then (their visitor went away).
fn together(
    chat: &mut ChatModel,
    mut answers: Vec<Answer>,
    mut leave: impl FnMut(usize, usize) -> bool,
) -> Vec<String> {
    let mut texts = vec![String::new(); answers.len()];
    let mut active: Vec<usize> = (0..answers.len()).collect();
    let mut step = 0;
    while !active.is_empty() {
        let mut batch: Vec<&mut Answer> = answers
            .iter_mut()
            .enumerate()
            .filter(|(index, _)| active.contains(index))
            .map(|(_, answer)| answer)
            .collect();
        let pieces = chat.step(&mut batch).unwrap();
        for (&index, piece) in active.iter().zip(pieces) {
            texts[index].push_str(&piece.unwrap_or_default());
        }
        step += 1;
        active.retain(|&index| !answers[index].ended() && !leave(index, step));
    }
    texts
}

#[test]
fn answers_decoded_together_are_the_answers_given_alone() {
    let mut chat = smollm2(0);
    let questions = [
        "What is the capital of France?",
        "Write a haiku about the sea, please, with a title and the season it speaks of.",
        "Hola",
        "List three colours.",
    ];
    let prompts: Vec<Vec<u32>> = questions
        .iter()
        .map(|question| prompt(&chat, &[user(question)]))
        .collect();
    let lengths = [24, 12, 30, 18];
    let expected: Vec<String> = prompts
        .iter()
        .zip(lengths)
        .map(|(ids, length)| alone(&mut chat, ids, &fixed(length)))
        .collect();
    assert!(expected.iter().all(|text| !text.is_empty()));

    let answers = prompts
        .iter()
        .zip(lengths)
        .map(|(ids, length)| chat.start(ids, &fixed(length)).unwrap())
        .collect();
    let texts = together(&mut chat, answers, |_, _| false);
    assert_eq!(texts, expected);
}

#[test]
fn an_answer_that_leaves_the_batch_leaves_the_others_unchanged() {
    let mut chat = smollm2(0);
    let prompts: Vec<Vec<u32>> = ["Tell me about Madrid.", "Count to ten.", "Say hello."]
        .iter()
        .map(|question| prompt(&chat, &[user(question)]))
        .collect();
    let expected: Vec<String> = prompts
        .iter()
        .map(|ids| alone(&mut chat, ids, &fixed(20)))
        .collect();
    let answers = prompts
        .iter()
        .map(|ids| chat.start(ids, &fixed(20)).unwrap())
        .collect();
    // The second answer's visitor leaves after its fourth step.
    let texts = together(&mut chat, answers, |index, step| index == 1 && step == 4);
    assert_eq!(texts[0], expected[0]);
    assert_eq!(texts[2], expected[2]);
    assert!(
        expected[1].starts_with(&texts[1]) && texts[1].len() < expected[1].len(),
        "the one that left stopped early: {:?} of {:?}",
        texts[1],
        expected[1]
    );
}

#[test]
fn a_kept_prefix_gives_the_cold_answer_and_an_edit_reuses_only_what_precedes_it() {
    let mut cold = smollm2(0);
    let mut warm = smollm2(64 << 20);
    let system = ChatMessage::new(
        Role::System,
        "You are a helpful assistant who answers briefly.",
    );
    let first = [system.clone(), user("What is the capital of France?")];
    let params = fixed(16);

    let first_ids = prompt(&warm, &first);
    let answer = warm
        .generate_from_ids(&first_ids, &params, &mut |_| engine::Flow::Continue)
        .unwrap();
    assert_eq!(answer.usage.cached_tokens, 0, "nothing was kept yet");
    assert_eq!(answer.text, alone(&mut cold, &first_ids, &params));

    // The second turn repeats the first and its answer: all of that is reused.
    let second = [
        first[0].clone(),
        first[1].clone(),
        ChatMessage::new(Role::Assistant, &answer.text),
        user("And of Spain?"),
    ];
    let second_ids = prompt(&warm, &second);
    let continued = warm
        .generate_from_ids(&second_ids, &params, &mut |_| engine::Flow::Continue)
        .unwrap();
    assert!(
        continued.usage.cached_tokens > first_ids.len(),
        "the first turn and some of its answer were reused: {} of {} tokens",
        continued.usage.cached_tokens,
        second_ids.len()
    );
    assert_eq!(continued.text, alone(&mut cold, &second_ids, &params));

    // The visitor edits the first question: nothing after the edit may be reused.
    let edited = [
        first[0].clone(),
        user("What is the capital of Italy?"),
        ChatMessage::new(Role::Assistant, &answer.text),
        user("And of Spain?"),
    ];
    let edited_ids = prompt(&warm, &edited);
    let edit_at = edited_ids
        .iter()
        .zip(&second_ids)
        .position(|(a, b)| a != b)
        .expect("the edit changes the tokens");
    let after_edit = warm
        .generate_from_ids(&edited_ids, &params, &mut |_| engine::Flow::Continue)
        .unwrap();
    assert!(
        after_edit.usage.cached_tokens > 0 && after_edit.usage.cached_tokens <= edit_at,
        "reused {} tokens; the prompts part at {edit_at}",
        after_edit.usage.cached_tokens
    );
    assert_eq!(after_edit.text, alone(&mut cold, &edited_ids, &params));

    // A new visitor with the same system prompt starts after it.
    let other = [system, user("Name a river.")];
    let other_ids = prompt(&warm, &other);
    let fresh = warm
        .generate_from_ids(&other_ids, &params, &mut |_| engine::Flow::Continue)
        .unwrap();
    assert!(fresh.usage.cached_tokens > 0);
    assert_eq!(fresh.text, alone(&mut cold, &other_ids, &params));
}

#[test]
fn kept_prefixes_stay_within_their_budget_through_fifty_conversations() {
    // About three of these conversations' keys and values (SmolLM2: 30 layers × 3 key/value
    // heads × 64 × 2 × 4 bytes = 45 KiB a token).
    let budget = 3 * 60 * 46_080;
    let mut chat = smollm2(budget);
    let params = fixed(4);
    let mut last_ids = Vec::new();
    for visitor in 0..50 {
        let question = format!("Visitor {visitor} asks: what is {visitor} plus {visitor}?");
        let ids = prompt(&chat, &[user(&question)]);
        chat.generate_from_ids(&ids, &params, &mut |_| engine::Flow::Continue)
            .unwrap();
        assert!(
            chat.prefixes.bytes() <= budget,
            "after visitor {visitor}: {} bytes kept, budget {budget}",
            chat.prefixes.bytes()
        );
        last_ids = ids;
    }
    assert!(
        (2..50).contains(&chat.prefixes.len()),
        "{} conversations kept: the budget holds a few, and the older ones were forgotten",
        chat.prefixes.len()
    );
    // The most recent conversation is among those kept: its next turn reuses it.
    let again = chat
        .generate_from_ids(&last_ids, &params, &mut |_| engine::Flow::Continue)
        .unwrap();
    assert_eq!(again.usage.cached_tokens, last_ids.len() - 1);
}
