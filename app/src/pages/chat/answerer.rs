//! Where an answer comes from, decided apart from the page: the server while it answers, the
//! visitor's browser when it cannot (and `[browser] failover` allows it), and the server again
//! as soon as it is healthy. A plain async state machine over the two places an answer can be
//! made, so that its transitions are tested without a browser.

use wire::feedback::AnswerBackend;

use crate::conversation::{BackendChoice, ChatError, StreamEvent};

/// The two places an answer can be made, and what the answerer asks before choosing.
pub trait Places {
    /// Whether the server says it can answer now (`GET /health`).
    async fn server_is_healthy(&self) -> bool;
    async fn on_server(&self, on_event: &mut dyn FnMut(StreamEvent)) -> Result<(), ChatError>;
    async fn in_browser(&self, on_event: &mut dyn FnMut(StreamEvent)) -> Result<(), ChatError>;
    /// The visitor pressed stop.
    fn stopped(&self) -> bool;
}

/// Makes one answer, handing its events to `on_event`; says where it was made last and how
/// that went.
pub async fn answer(
    backend: BackendChoice,
    places: &impl Places,
    mut on_event: impl FnMut(StreamEvent),
) -> (AnswerBackend, Result<(), ChatError>) {
    let mut place = match backend {
        BackendChoice::Browser => AnswerBackend::Browser,
        BackendChoice::Server => AnswerBackend::Server,
        BackendChoice::Auto if places.server_is_healthy().await => AnswerBackend::Server,
        BackendChoice::Auto => AnswerBackend::Browser,
    };
    if place == AnswerBackend::Server {
        let mut began = false;
        let result = places
            .on_server(&mut |event| {
                began |= matches!(event, StreamEvent::Text(_) | StreamEvent::Reasoning(_));
                on_event(event);
            })
            .await;
        // The same question, history included, goes to the browser when the server could not
        // even begin to answer; an answer cut halfway stays the server's.
        let fail_over = backend == BackendChoice::Auto
            && !began
            && !places.stopped()
            && result
                .as_ref()
                .is_err_and(ChatError::server_could_not_serve);
        if !fail_over {
            return (place, result);
        }
        place = AnswerBackend::Browser;
    }
    (place, places.in_browser(&mut on_event).await)
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::future::Future;
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};

    use super::*;
    use crate::conversation::Failure;

    /// What each place does when asked, and what was asked of them.
    struct Scripted {
        healthy: bool,
        server: Vec<StreamEvent>,
        server_ends: Result<(), ChatError>,
        stopped: bool,
        asked: RefCell<Vec<&'static str>>,
    }

    impl Scripted {
        fn new(
            healthy: bool,
            server: Vec<StreamEvent>,
            server_ends: Result<(), ChatError>,
        ) -> Self {
            Self {
                healthy,
                server,
                server_ends,
                stopped: false,
                asked: RefCell::new(Vec::new()),
            }
        }
    }

    impl Places for Scripted {
        async fn server_is_healthy(&self) -> bool {
            self.asked.borrow_mut().push("health");
            self.healthy
        }

        async fn on_server(&self, on_event: &mut dyn FnMut(StreamEvent)) -> Result<(), ChatError> {
            self.asked.borrow_mut().push("server");
            self.server.iter().cloned().for_each(&mut *on_event);
            self.server_ends.clone()
        }

        async fn in_browser(&self, on_event: &mut dyn FnMut(StreamEvent)) -> Result<(), ChatError> {
            self.asked.borrow_mut().push("browser");
            on_event(StreamEvent::Text("desde el navegador".into()));
            Ok(())
        }

        fn stopped(&self) -> bool {
            self.stopped
        }
    }

    /// The scripted places never wait: one poll finishes.
    fn run<F: Future>(future: F) -> F::Output {
        match pin!(future).poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(output) => output,
            Poll::Pending => panic!("the scripted places never wait"),
        }
    }

    fn busy() -> Result<(), ChatError> {
        Err(ChatError::from_response(429, "{}"))
    }

    fn texts(
        backend: BackendChoice,
        places: &Scripted,
    ) -> (AnswerBackend, Result<(), ChatError>, Vec<String>) {
        let mut texts = Vec::new();
        let (place, result) = run(answer(backend, places, |event| {
            if let StreamEvent::Text(text) = event {
                texts.push(text);
            }
        }));
        (place, result, texts)
    }

    #[test]
    fn a_healthy_server_answers() {
        let places = Scripted::new(true, vec![StreamEvent::Text("hola".into())], Ok(()));
        let (place, result, texts) = texts(BackendChoice::Auto, &places);
        assert_eq!(
            (place, result, texts),
            (AnswerBackend::Server, Ok(()), vec!["hola".to_owned()])
        );
        assert_eq!(*places.asked.borrow(), ["health", "server"]);
    }

    #[test]
    fn an_unhealthy_server_is_not_asked() {
        let places = Scripted::new(false, Vec::new(), Ok(()));
        let (place, result, _) = texts(BackendChoice::Auto, &places);
        assert_eq!((place, result), (AnswerBackend::Browser, Ok(())));
        assert_eq!(*places.asked.borrow(), ["health", "browser"]);
    }

    #[test]
    fn a_server_that_cannot_begin_hands_the_question_to_the_browser() {
        let places = Scripted::new(
            true,
            vec![StreamEvent::Queued {
                position: 1,
                estimated_wait_seconds: None,
            }],
            busy(),
        );
        let (place, result, texts) = texts(BackendChoice::Auto, &places);
        assert_eq!((place, result), (AnswerBackend::Browser, Ok(())));
        assert_eq!(texts, ["desde el navegador"]);
        assert_eq!(*places.asked.borrow(), ["health", "server", "browser"]);
    }

    #[test]
    fn an_answer_cut_halfway_stays_the_servers() {
        let cut = Err(ChatError::connection("reset".into()));
        let places = Scripted::new(true, vec![StreamEvent::Text("Hola, ".into())], cut.clone());
        let (place, result, _) = texts(BackendChoice::Auto, &places);
        assert_eq!((place, result), (AnswerBackend::Server, cut));
    }

    #[test]
    fn no_failover_when_chosen_stopped_or_the_visitor_must_act() {
        // The visitor chose the server.
        let places = Scripted::new(true, Vec::new(), busy());
        let (place, result, _) = texts(BackendChoice::Server, &places);
        assert_eq!(
            (place, result.unwrap_err().failure),
            (AnswerBackend::Server, Failure::Busy)
        );
        assert_eq!(*places.asked.borrow(), ["server"]);
        // The visitor pressed stop.
        let mut places = Scripted::new(true, Vec::new(), busy());
        places.stopped = true;
        assert_eq!(texts(BackendChoice::Auto, &places).0, AnswerBackend::Server);
        // Too long for the model: the browser's is no larger.
        let too_long = Err(ChatError::from_response(422, "{}"));
        let places = Scripted::new(true, Vec::new(), too_long);
        assert_eq!(texts(BackendChoice::Auto, &places).0, AnswerBackend::Server);
    }

    #[test]
    fn the_browser_backend_never_asks_the_server() {
        let places = Scripted::new(true, Vec::new(), Ok(()));
        assert_eq!(
            texts(BackendChoice::Browser, &places).0,
            AnswerBackend::Browser
        );
        assert_eq!(*places.asked.borrow(), ["browser"]);
    }
}
