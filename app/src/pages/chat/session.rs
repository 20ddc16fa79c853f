//! One visitor's chat on the page: its signals, and what sending, regenerating, editing,
//! stopping and clearing do to them. The views only read these signals and call these methods.

use leptos::html::Textarea;
use leptos::prelude::*;

use super::answerer;
use super::{Turn, platform};
use crate::conversation::{
    AnswerMeta, BackendChoice, ChatError, EarlierAnswer, Saved, SavedTurn, Settings, Speaker,
    StreamEvent, request_body, worker_request,
};
use crate::space::BrowserSettings;
use wire::feedback::{AnswerBackend, Rating};
use wire::openai::ChatCompletionRequest;
use wire::worker::WorkerRequest;

/// The browser's AbortController cannot leave its thread; the server's stand-in can, and
/// must, since a server render may end on another thread than it began.
#[cfg(feature = "hydrate")]
type Controller = StoredValue<Option<platform::Abort>, LocalStorage>;
#[cfg(not(feature = "hydrate"))]
type Controller = StoredValue<Option<platform::Abort>>;

#[derive(Clone, Copy)]
pub(super) struct Session {
    pub(super) settings: RwSignal<Settings>,
    pub(super) turns: RwSignal<Vec<Turn>>,
    next_key: StoredValue<usize>,
    pub(super) draft: RwSignal<String>,
    pub(super) context_draft: RwSignal<String>,
    pub(super) busy: RwSignal<bool>,
    pub(super) failure: RwSignal<Option<ChatError>>,
    pub(super) failover: bool,
    requantize: bool,
    /// The browser model's download: progress and when it began (for speed and time left).
    pub(super) download: RwSignal<Option<(platform::Progress, f64)>>,
    pub(super) question_box: NodeRef<Textarea>,
    /// Buttons stay disabled until the page is interactive: a click before hydration would be
    /// lost.
    pub(super) interactive: RwSignal<bool>,
    controller: Controller,
    /// A random id that groups this conversation's feedback.
    pub(super) conversation: RwSignal<String>,
}

impl Session {
    pub(super) fn new(settings: Settings, browser_settings: &BrowserSettings) -> Self {
        Self {
            settings: RwSignal::new(settings),
            turns: RwSignal::new(Vec::new()),
            next_key: StoredValue::new(0),
            draft: RwSignal::new(String::new()),
            context_draft: RwSignal::new(String::new()),
            busy: RwSignal::new(false),
            failure: RwSignal::new(None),
            failover: browser_settings.failover,
            requantize: browser_settings.requantize,
            download: RwSignal::new(None),
            question_box: NodeRef::new(),
            interactive: RwSignal::new(false),
            #[cfg(feature = "hydrate")]
            controller: StoredValue::new_local(None),
            #[cfg(not(feature = "hydrate"))]
            controller: StoredValue::new(None),
            conversation: RwSignal::new(String::new()),
        }
    }

    /// Brings back the last visit's conversation and keeps every change in the browser.
    /// Effects run only in the browser, after hydration: the server's HTML is an empty chat.
    pub(super) fn restore_and_keep(self) {
        Effect::new(move || {
            let mut conversation_id = String::new();
            if let Some(saved) = platform::load_saved() {
                self.settings.set(saved.settings.clamped());
                conversation_id = saved.conversation;
                for turn in saved.turns {
                    self.push_turn(turn);
                }
            }
            self.conversation.set(if conversation_id.is_empty() {
                platform::random_key()
            } else {
                conversation_id
            });
            self.interactive.set(true);
        });
        Effect::new(move || {
            let saved = Saved {
                turns: self.turns.get().iter().map(Turn::saved).collect(),
                settings: self.settings.get(),
                conversation: self.conversation.get(),
            };
            if self.interactive.get() {
                platform::save(&saved);
            }
        });
    }

    pub(super) fn can_act(self) -> bool {
        self.interactive.get() && !self.busy.get()
    }

    pub(super) fn has_question(self) -> bool {
        self.turns
            .with(|turns| turns.iter().any(|turn| turn.speaker == Speaker::Visitor))
    }

    fn push_turn(self, saved: SavedTurn) -> Turn {
        let key = self.next_key.get_value();
        self.next_key.set_value(key + 1);
        let turn = Turn {
            key,
            speaker: saved.speaker,
            text: RwSignal::new(saved.text),
            context: RwSignal::new(saved.context),
            stats: RwSignal::new(saved.stats),
            queued: RwSignal::new(None),
            meta: RwSignal::new(saved.meta),
            earlier: RwSignal::new(saved.earlier),
        };
        self.turns.update(|turns| turns.push(turn));
        turn
    }

    /// Asks `question` (with the text it refers to, if any).
    pub(super) fn send(self, question: String, context: Option<String>) {
        let question = question.trim().to_owned();
        if question.is_empty() || self.busy.get_untracked() {
            return;
        }
        self.draft.set(String::new());
        self.context_draft.set(String::new());
        self.push_turn(SavedTurn::new(
            Speaker::Visitor,
            question,
            context.filter(|context| !context.trim().is_empty()),
        ));
        self.answer(platform::random_key(), Vec::new());
    }

    /// A new answer to the last question; the replaced one stays with it, as the visitor
    /// preferred another one.
    pub(super) fn regenerate(self) {
        if self.busy.get_untracked() {
            return;
        }
        let (mut turn_key, mut earlier) = (platform::random_key(), Vec::new());
        self.turns.update(|turns| {
            if let Some(replaced) = turns.pop_if(|turn| turn.speaker == Speaker::Model) {
                earlier = replaced.earlier.get_untracked();
                if let Some(meta) = replaced.meta.get_untracked() {
                    turn_key = meta.turn_key.clone();
                    earlier.push(EarlierAnswer {
                        text: replaced.text.get_untracked(),
                        stats: replaced.stats.get_untracked(),
                        meta,
                    });
                }
            }
        });
        self.answer(turn_key, earlier);
    }

    /// Takes the last question (and its answer) back into the composer.
    pub(super) fn edit_last(self) {
        if self.busy.get_untracked() {
            return;
        }
        let mut last_question = None;
        self.turns.update(|turns| {
            while let Some(turn) = turns.pop() {
                if turn.speaker == Speaker::Visitor {
                    last_question = Some(turn);
                    break;
                }
            }
        });
        if let Some(turn) = last_question {
            self.draft.set(turn.text.get_untracked());
            self.context_draft
                .set(turn.context.get_untracked().unwrap_or_default());
            self.failure.set(None);
            if let Some(question_box) = self.question_box.get_untracked() {
                let _ = question_box.focus();
            }
        }
    }

    pub(super) fn stop(self) {
        if let Some(abort) = self.controller.get_value() {
            abort.abort();
        }
    }

    pub(super) fn clear(self) {
        self.turns.set(Vec::new());
        self.conversation.set(platform::random_key());
        self.failure.set(None);
    }

    /// Answers the conversation as it stands, which ends with the visitor's turn; `turn_key`
    /// and `earlier` carry over the answers a regeneration replaces.
    fn answer(self, turn_key: String, earlier: Vec<EarlierAnswer>) {
        let history: Vec<SavedTurn> = self.turns.get_untracked().iter().map(Turn::saved).collect();
        if history
            .last()
            .is_none_or(|turn| turn.speaker != Speaker::Visitor)
        {
            return;
        }
        let current = self.settings.get_untracked().clamped();
        let seed = platform::random_seed();
        let backend = if self.failover {
            current.backend
        } else {
            BackendChoice::Server
        };
        let reply = self.push_turn(SavedTurn {
            earlier,
            ..SavedTurn::new(Speaker::Model, String::new(), None)
        });
        let meta = AnswerMeta {
            answer_key: platform::random_key(),
            turn_key,
            seed,
            backend: AnswerBackend::Server,
            settings: current.clone(),
            rating: Rating::None,
        };
        self.failure.set(None);
        self.busy.set(true);
        let abort = platform::Abort::new();
        self.controller.set_value(Some(abort.clone()));
        let places = PagePlaces {
            body: request_body(&history, &current, seed, None),
            in_browser_request: worker_request(&history, &current, seed),
            requantize: self.requantize,
            threads: current
                .browser_threads
                .unwrap_or_else(platform::default_threads),
            abort,
            download: self.download,
            queued: reply.queued,
        };
        leptos::task::spawn_local(async move {
            let (made_by, result) = answerer::answer(backend, &places, reply.on_event()).await;
            self.finish(reply, meta, made_by, result);
        });
    }

    fn finish(
        self,
        reply: Turn,
        meta: AnswerMeta,
        backend: AnswerBackend,
        result: Result<(), ChatError>,
    ) {
        reply.queued.set(None);
        if result.is_ok() && !reply.text.get_untracked().is_empty() {
            reply.meta.set(Some(AnswerMeta { backend, ..meta }));
        }
        if let Err(error) = result {
            // An answer that never began leaves no empty bubble behind.
            if reply.text.get_untracked().is_empty() {
                self.turns
                    .update(|turns| turns.retain(|turn| turn.key != reply.key));
            }
            self.failure.set(Some(error));
        }
        self.busy.set(false);
    }
}

impl Turn {
    /// What each event of an answer does to this (the model's) turn.
    fn on_event(self) -> impl FnMut(StreamEvent) {
        move |event| match event {
            StreamEvent::Text(_) | StreamEvent::Reasoning(_) => {
                self.queued.set(None);
                self.text
                    .update(|answer| crate::conversation::append_answer(answer, &event));
            }
            StreamEvent::Queued {
                position,
                estimated_wait_seconds,
            } => self.queued.set(Some((position, estimated_wait_seconds))),
            StreamEvent::Finished(stats) => self.stats.set(Some(stats)),
            StreamEvent::Nothing => {}
        }
    }
}

/// The page's two places to answer: the server's API and the browser worker.
struct PagePlaces {
    body: ChatCompletionRequest,
    in_browser_request: WorkerRequest,
    requantize: bool,
    /// The browser model's threads, as the visitor set them.
    threads: u32,
    abort: platform::Abort,
    /// The browser model's download: progress and when it began (for speed and time left).
    download: RwSignal<Option<(platform::Progress, f64)>>,
    /// The answer's place in the server's queue, which the browser does not have.
    queued: RwSignal<Option<(u64, Option<f64>)>>,
}

impl answerer::Places for PagePlaces {
    async fn server_is_healthy(&self) -> bool {
        platform::server_problem().await.is_none()
    }

    async fn on_server(&self, on_event: &mut dyn FnMut(StreamEvent)) -> Result<(), ChatError> {
        platform::stream_answer(&self.body, &self.abort, on_event).await
    }

    async fn in_browser(&self, on_event: &mut dyn FnMut(StreamEvent)) -> Result<(), ChatError> {
        self.queued.set(None);
        let download = self.download;
        let on_progress = move |progress: platform::Progress| {
            download.update(|download| {
                let started = download.map_or_else(platform::now_ms, |(_, started)| started);
                *download = Some((progress, started));
            })
        };
        let result = platform::answer_in_browser(
            self.in_browser_request.clone(),
            self.requantize,
            self.threads,
            &self.abort,
            on_progress,
            on_event,
        )
        .await;
        download.set(None);
        result
    }

    fn stopped(&self) -> bool {
        self.abort.aborted()
    }
}
