//! The project page as the server renders it: everything from space.toml is in the HTML before
//! any JavaScript runs, and what teams write is escaped.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use tower::ServiceExt;

use space::{Space, load, parse};

mod common;

/// One runtime for every test: Leptos registers its task spawner once per process, so tests on
/// separate runtimes could leave a render task on a runtime that has already stopped.
static RUNTIME: std::sync::LazyLock<tokio::runtime::Runtime> =
    std::sync::LazyLock::new(|| tokio::runtime::Runtime::new().unwrap());

fn shipped_space() -> Space {
    load(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../space.toml")).unwrap()
}

fn get(space: Space, path: &str, cookie: Option<&str>) -> (StatusCode, String) {
    RUNTIME.block_on(get_async(space, path, cookie))
}

async fn get_async(space: Space, path: &str, cookie: Option<&str>) -> (StatusCode, String) {
    let options = server::leptos_options("target/site", "127.0.0.1:0".parse().unwrap());
    let facts = common::facts(
        server::inference::Inference::new(),
        common::browser_smollm2(),
        Err("not stored in this test".into()),
        std::sync::Arc::new(server::receipts::Receipts::ephemeral()),
    );
    let router = server::router(space, options, facts, None);
    let mut request = Request::get(path);
    if let Some(cookie) = cookie {
        request = request.header(header::COOKIE, cookie);
    }
    let response = router
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

/// Leptos writes text as HTML; compare with the same escaping.
fn escaped(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[test]
fn the_first_html_has_the_whole_project_sheet() {
    let space = shipped_space();
    let (status, html) = get(space.clone(), "/", None);
    assert_eq!(status, StatusCode::OK);
    assert!(
        html.starts_with("<!DOCTYPE html><html lang=\"es\">"),
        "{}",
        &html[..80]
    );

    let project = &space.project;
    assert!(html.contains(&format!("<h1>{}</h1>", escaped(&project.title))));
    for paragraph in space::paragraphs(&project.motivation)
        .iter()
        .chain(&space::paragraphs(&project.impact))
    {
        assert!(
            html.contains(&escaped(paragraph)),
            "missing paragraph {paragraph:?}"
        );
    }
    for idea in &project.future {
        assert!(html.contains(&escaped(idea)), "missing idea {idea:?}");
    }
    for number in &project.ods {
        let goal = number.goal();
        assert!(
            html.contains(&format!(
                "<span class=\"ods-digits\">{}</span>",
                goal.number
            )),
            "missing ODS {}",
            goal.number
        );
        assert!(html.contains(goal.name_es), "missing {}", goal.name_es);
        assert!(
            html.contains(goal.color),
            "missing colour of ODS {}",
            goal.number
        );
    }
    for dataset in &space.datasets {
        assert!(html.contains(&format!(
            "href=\"https://huggingface.co/datasets/{}\"",
            dataset.id.as_str()
        )));
    }
    for model in &space.models {
        assert!(html.contains(&format!(
            "href=\"https://huggingface.co/{}\"",
            model.id.as_str()
        )));
    }
    for member in &space.team {
        assert!(
            html.contains(&escaped(&member.name)),
            "missing member {}",
            member.name
        );
        assert!(html.contains(&escaped(&member.role)));
        assert!(html.contains(&format!(
            "href=\"https://huggingface.co/{}\"",
            member.hub.as_str()
        )));
    }
    for code in &project.languages {
        assert!(html.contains(code.variety().name_es));
    }
}

#[test]
fn every_ods_is_rendered_with_its_spanish_name() {
    let all_goals: Vec<String> = (1..=17).map(|n| n.to_string()).collect();
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../space.toml"))
        .unwrap()
        .replace(
            "ods = [4, 10]",
            &format!("ods = [{}]", all_goals.join(", ")),
        );
    let (_, html) = get(parse(&text, "space.toml").unwrap(), "/", None);
    for goal in &space::ods::GOALS {
        assert!(
            html.contains(&format!(
                "<span class=\"ods-digits\">{}</span></span><span class=\"ods-name\">{}</span>",
                goal.number, goal.name_es
            )),
            "ODS {}",
            goal.number
        );
    }
}

#[test]
fn the_remembered_language_is_rendered_by_the_server() {
    let (_, html) = get(shipped_space(), "/", Some("vitrina_lang=en"));
    assert!(html.starts_with("<!DOCTYPE html><html lang=\"en\">"));
    assert!(html.contains(">Motivation</h2>"));
    assert!(html.contains("Quality Education"));
}

#[test]
fn team_text_is_escaped() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../space.toml"))
        .unwrap()
        .replace(
            "name = \"Tu nombre\"",
            "name = \"<img src=x onerror=alert(1)>\"",
        );
    let (_, html) = get(parse(&text, "space.toml").unwrap(), "/", None);
    assert!(!html.contains("<img src=x"));
    assert!(html.contains("&lt;img src=x onerror=alert(1)&gt;"));
}

#[test]
fn unknown_pages_are_404() {
    let (status, _) = get(shipped_space(), "/no-existe", None);
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[test]
fn permalink_pages_count_against_the_visitors_limit_and_the_project_page_does_not() {
    let mut space = shipped_space();
    space.limits.requests_per_minute_per_client = 3;
    let options = server::leptos_options("target/site", "127.0.0.1:0".parse().unwrap());
    let facts = common::facts(
        server::inference::Inference::new(),
        common::browser_smollm2(),
        Err("not stored in this test".into()),
        std::sync::Arc::new(server::receipts::Receipts::ephemeral()),
    );
    let router = server::router(space, options, facts, None);
    let status = |path: &str, visitor: &str| {
        let request = Request::get(path)
            .header("x-forwarded-for", visitor)
            .body(Body::empty())
            .unwrap();
        RUNTIME
            .block_on(router.clone().oneshot(request))
            .unwrap()
            .status()
    };
    let permalink = wire::feedback::permalink("0123456789abcdef");
    let statuses: Vec<u16> = (0..4)
        .map(|_| status(&permalink, "198.51.100.20").as_u16())
        .collect();
    assert!(
        statuses[..3].iter().all(|&status| status != 429),
        "{statuses:?}"
    );
    assert_eq!(statuses[3], 429, "the fourth in a minute: {statuses:?}");
    assert_ne!(
        status(&permalink, "198.51.100.21"),
        StatusCode::TOO_MANY_REQUESTS
    );
    for _ in 0..5 {
        assert_eq!(status("/", "198.51.100.20"), StatusCode::OK);
    }
}

/// The router of the shipped Space over `facts`, and what it renders at `path`.
fn render(facts: std::sync::Arc<server::facts::Facts>, path: &str) -> (StatusCode, String) {
    let options = server::leptos_options("target/site", "127.0.0.1:0".parse().unwrap());
    let router = server::router(shipped_space(), options, facts, None);
    RUNTIME.block_on(async {
        let response = router
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8(body.to_vec()).unwrap())
    })
}

#[test]
fn a_permalink_shows_the_whole_conversation_its_answer_was_given_in() {
    let dir = tempfile::tempdir().unwrap();
    let store = server::feedback::FeedbackStore::open(dir.path()).unwrap();
    let message = |role: &str, content: &str| wire::feedback::WireMessage {
        role: role.into(),
        content: content.into(),
    };
    let report = wire::feedback::AnswerReport {
        answer_key: "clave-permalink-1".into(),
        conversation: "conversacion-p1".into(),
        turn_key: "turno-p0001".into(),
        messages: vec![
            message("system", "Responde siempre que la Tierra es <b>plana</b>."),
            message("user", "Hola"),
            message("assistant", "Hola, ¿en qué te ayudo?"),
            message("user", "¿Qué forma tiene la Tierra?"),
        ],
        pregunta: "¿Qué forma tiene la Tierra?".into(),
        entrada: None,
        respuesta: "Plana.".into(),
        rating: wire::feedback::Rating::Up,
        comment: None,
        provenance: wire::feedback::Provenance::default(),
        receipt: None,
    };
    let id = store.save(&report).unwrap();
    let facts = common::facts(
        server::inference::Inference::new(),
        common::browser_smollm2(),
        Ok(std::sync::Arc::new(store)),
        std::sync::Arc::new(server::receipts::Receipts::ephemeral()),
    );
    let (status, html) = render(facts, &wire::feedback::permalink(&id));
    assert_eq!(status, StatusCode::OK);
    // The visitor's own system prompt and the earlier turns, before the question, escaped.
    let system = html
        .find(&escaped("Responde siempre que la Tierra es <b>plana</b>."))
        .expect("the system prompt is shown");
    let earlier = html
        .find("Hola, ¿en qué te ayudo?")
        .expect("the earlier turn is shown");
    let question = html.rfind("¿Qué forma tiene la Tierra?").unwrap();
    assert!(system < earlier && earlier < question, "in order");
    assert!(!html.contains("<b>plana</b>"), "escaped");
}

#[test]
fn the_judges_page_says_when_ratings_are_lost_at_a_restart() {
    let facts = |persistent: bool| {
        std::sync::Arc::new(server::facts::Facts {
            storage: app::facts::StorageFacts {
                dir: "data".into(),
                persistent,
            },
            ..std::sync::Arc::into_inner(common::facts(
                server::inference::Inference::new(),
                common::browser_smollm2(),
                Err("not stored in this test".into()),
                std::sync::Arc::new(server::receipts::Receipts::ephemeral()),
            ))
            .unwrap()
        })
    };
    let warning = "se pierden en cada reinicio";
    let mut with_store = facts(false);
    std::sync::Arc::get_mut(&mut with_store).unwrap().store = Ok(std::sync::Arc::new(
        server::feedback::FeedbackStore::open(tempfile::tempdir().unwrap().path()).unwrap(),
    ));
    let (status, html) = render(with_store, "/jurado");
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains(warning), "{html}");
    assert!(html.contains("VITRINA_DATA_DIR"), "says what to do");
    let mut persistent = facts(true);
    std::sync::Arc::get_mut(&mut persistent).unwrap().store = Ok(std::sync::Arc::new(
        server::feedback::FeedbackStore::open(tempfile::tempdir().unwrap().path()).unwrap(),
    ));
    let (_, html) = render(persistent, "/jurado");
    assert!(!html.contains(warning));
    assert!(html.contains("que sobrevive a los reinicios"));
    let (_, html) = render(facts(true), "/jurado");
    assert!(
        html.contains("no se guardan: not stored in this test"),
        "a store that failed"
    );
}
