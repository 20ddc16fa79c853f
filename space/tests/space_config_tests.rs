//! Every way a team can get `space.toml` wrong gets a message naming the file, line, column,
//! key, what was found and what is allowed.

use space::{SpaceError, load, parse};

const VALID: &str = r#"
[project]
title = "Proyecto"
summary = "Resumen"
motivation = "Motivación"
impact = "Impacto"
future = ["Idea"]
ods = [4, 10]
languages = ["es", "es_mx"]
license = "apache-2.0"

[[team]]
name = "Tu nombre"
hub = "tu-usuario"
role = "Rol"

[[datasets]]
id = "tu-organizacion/corpus"
description = "Corpus"

[[models]]
id = "tu-organizacion/modelo"
description = "Modelo"
"#;

fn error_for(text: &str) -> String {
    match parse(text, "space.toml") {
        Ok(_) => panic!("expected an error for:\n{text}"),
        Err(error) => error.to_string(),
    }
}

fn invalid_for(text: &str) -> space::InvalidSpace {
    match parse(text, "space.toml") {
        Err(SpaceError::Invalid(invalid)) => *invalid,
        other => panic!("expected an invalid-space error, got {other:?}"),
    }
}

fn assert_contains(message: &str, expected: &[&str]) {
    for part in expected {
        assert!(message.contains(part), "missing {part:?} in:\n{message}");
    }
}

#[test]
fn valid_text_and_shipped_file_parse() {
    let space = parse(VALID, "space.toml").unwrap();
    assert_eq!(space.project.title, "Proyecto");
    assert_eq!(
        space
            .project
            .ods
            .iter()
            .map(|n| n.goal().number)
            .collect::<Vec<_>>(),
        [4, 10]
    );
    assert!(space.examples.is_empty());

    let shipped =
        load(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../space.toml")).unwrap();
    assert!(!shipped.team.is_empty() && !shipped.examples.is_empty());
}

#[test]
fn ods_outside_one_to_seventeen() {
    let text = VALID.replace("ods = [4, 10]", "ods = [4, 18]");
    let invalid = invalid_for(&text);
    // toml reports the array's position; the key's index names the element.
    assert_eq!((invalid.line, invalid.column), (8, 7));
    assert_eq!(invalid.key, "project.ods[1]");
    let message = invalid.to_string();
    assert_contains(
        &message,
        &[
            "space.toml:8:7",
            "key `project.ods[1]`",
            "found 18",
            "from 1 to 17",
            "ods = [4, 18]",
        ],
    );

    assert_contains(
        &error_for(&VALID.replace("ods = [4, 10]", "ods = [0]")),
        &["found 0"],
    );
    assert_contains(
        &error_for(&VALID.replace("ods = [4, 10]", "ods = []")),
        &["project.ods", "empty list"],
    );
}

#[test]
fn unknown_idioma_code_suggests_the_closest() {
    let text = VALID.replace(r#"["es", "es_mx"]"#, r#"["es", "es-mx"]"#);
    let message = error_for(&text);
    assert_contains(
        &message,
        &[
            "space.toml:9:",
            "key `project.languages[1]`",
            r#"found "es-mx""#,
            r#"did you mean "es_mx"?"#,
            "allowed: es, es_ar",
            "eu, gl",
        ],
    );
}

#[test]
fn missing_title() {
    let text = VALID.replace("title = \"Proyecto\"\n", "");
    let invalid = invalid_for(&text);
    assert_eq!(invalid.key, "project.title");
    assert_contains(
        &invalid.to_string(),
        &["space.toml:", "missing key `title` in [project]"],
    );
}

#[test]
fn blank_title() {
    let message = error_for(&VALID.replace("title = \"Proyecto\"", "title = \"  \""));
    assert_contains(
        &message,
        &[
            "space.toml:3:",
            "key `project.title`",
            "found an empty text",
        ],
    );
}

#[test]
fn malformed_hub_ids() {
    let message = error_for(&VALID.replace("tu-organizacion/corpus", "corpus"));
    assert_contains(
        &message,
        &[
            "space.toml:18:",
            "key `datasets[0].id`",
            r#"found "corpus""#,
            "`owner/name`",
        ],
    );

    let message = error_for(&VALID.replace("tu-organizacion/modelo", "https://huggingface.co/x/y"));
    assert_contains(
        &message,
        &["key `models[0].id`", "found \"https://huggingface.co/x/y\""],
    );

    let message = error_for(&VALID.replace("hub = \"tu-usuario\"", "hub = \"@tu usuario\""));
    assert_contains(&message, &["key `team[0].hub`", "Hugging Face username"]);
}

#[test]
fn unknown_key_with_did_you_mean() {
    let invalid = invalid_for(&VALID.replace("summary =", "sumary ="));
    assert_eq!((invalid.line, invalid.column), (4, 1));
    assert_eq!(invalid.key, "project.sumary");
    assert_contains(
        &invalid.to_string(),
        &[
            "space.toml:4:1",
            "unknown key `sumary` in [project]",
            "did you mean `summary`?",
            "allowed: title, summary",
        ],
    );

    let message = error_for(&VALID.replace("[[datasets]]", "[[dataset]]"));
    assert_contains(
        &message,
        &[
            "key `dataset`",
            "found a list ([[dataset]])",
            "did you mean `datasets`?",
        ],
    );
}

#[test]
fn unknown_license_and_bad_link() {
    let message = error_for(&VALID.replace("apache-2.0", "apache2"));
    assert_contains(
        &message,
        &[
            "key `project.license`",
            r#"found "apache2""#,
            r#"did you mean "apache-2.0"?"#,
        ],
    );

    let message = error_for(&VALID.replace(
        "role = \"Rol\"",
        "role = \"Rol\"\nlinks = [\"javascript:alert(1)\"]",
    ));
    assert_contains(&message, &["key `team[0].links[0]`", "http(s) address"]);
}

#[test]
fn empty_team_and_toml_syntax() {
    let text = VALID.replace(
        "[[team]]\nname = \"Tu nombre\"\nhub = \"tu-usuario\"\nrole = \"Rol\"\n",
        "team = []\n",
    );
    // `team = []` after [project] would belong to it; put it before.
    let text = format!("team = []\n{}", text.replacen("team = []\n", "", 1));
    assert_contains(&error_for(&text), &["key `team`", "empty list"]);

    let message = error_for(&VALID.replace("ods = [4, 10]", "ods = [4, 10"));
    assert_contains(
        &message,
        &["space.toml:9:1", "key `(TOML syntax)`", "missing comma"],
    );
}

#[test]
fn unreadable_file_says_how_to_point_at_one() {
    let error = load(std::path::Path::new("/nonexistent/space.toml")).unwrap_err();
    assert_contains(
        &error.to_string(),
        &["/nonexistent/space.toml", "--config FILE"],
    );
}

#[test]
fn model_and_user_text_is_kept_verbatim() {
    let text = VALID.replace("Resumen", "<script>alert('x')</script>");
    let space = parse(&text, "space.toml").unwrap();
    assert_eq!(space.project.summary, "<script>alert('x')</script>");
}

#[test]
fn chat_and_limits_are_optional_and_checked() {
    let space = parse(VALID, "space.toml").unwrap();
    assert_eq!(
        (
            space.limits.max_concurrent,
            space.limits.max_queue,
            space.chat.max_tokens
        ),
        (4, 8, 512)
    );

    let message = error_for(&format!(
        "{VALID}\n[limits]\nmax_concurrent = 4\nmax_queue = 2\n"
    ));
    assert_contains(
        &message,
        &[
            "space.toml:",
            "key `limits`",
            "max_queue (2) is smaller than max_concurrent (4)",
        ],
    );

    let message = error_for(&format!(
        "{VALID}\n[limits]\nmax_input_tokens = 4096\nmax_total_tokens = 1024\n"
    ));
    assert_contains(
        &message,
        &[
            "max_input_tokens (4096) leaves no room",
            "max_total_tokens (1024)",
        ],
    );

    let invalid = invalid_for(&format!("{VALID}\n[limits]\nmax_queue = 0\n"));
    assert_eq!(invalid.key, "limits.max_queue");
    assert_contains(&invalid.problem, &["found 0", "from 1 to 1024"]);

    let invalid = invalid_for(&format!(
        "{VALID}\n[limits]\ntrusted_proxies = [\"10.0.0.0/33\"]\n"
    ));
    assert_contains(
        &invalid.problem,
        &["\"10.0.0.0/33\"", "an IP address or range"],
    );

    let invalid = invalid_for(&format!("{VALID}\n[limits]\nmax_queu = 3\n"));
    assert_contains(
        &invalid.problem,
        &["unknown key `max_queu`", "did you mean `max_queue`"],
    );

    let invalid = invalid_for(&format!("{VALID}\n[chat]\ntemperature = 3.5\n"));
    assert_eq!(invalid.key, "chat.temperature");
    assert_contains(&invalid.problem, &["found 3.5", "from 0"]);

    let invalid = invalid_for(&format!("{VALID}\n[chat]\ntop_p = 0\n"));
    assert_contains(&invalid.problem, &["found 0", "from 0.01 to 1"]);
}

#[test]
fn the_model_is_one_of_catalog_hub_or_path() {
    let space = parse(VALID, "space.toml").unwrap();
    assert_eq!(
        space.model.source,
        space::ModelSource::Catalog("qwen2.5-coder-0.5b".into())
    );

    let hub = format!(
        "{VALID}\n[model]\nhub = {{ repo = \"equipo/modelo-GGUF\", file = \"modelo-q4_k_m.gguf\", sha256 = \"{}\" }}\nchat_template = \"{{{{ messages }}}}\"\n",
        "AB".repeat(32)
    );
    let space = parse(&hub, "space.toml").unwrap();
    match space.model.source {
        space::ModelSource::Hub {
            repo,
            revision,
            sha256,
            ..
        } => {
            assert_eq!(
                (repo.as_str(), revision.as_str(), sha256),
                ("equipo/modelo-GGUF", "main", Some("ab".repeat(32)))
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(space.model.chat_template.as_deref(), Some("{{ messages }}"));

    let message = error_for(&format!(
        "{VALID}\n[model]\ncatalog = \"x\"\npath = \"m.gguf\"\n"
    ));
    assert_contains(&message, &["key `model`", "exactly one of `catalog`"]);
    let message = error_for(&format!(
        "{VALID}\n[model]\nhub = {{ repo = \"a/b\", file = \"m.gguf\", sha256 = \"abc\" }}\n"
    ));
    assert_contains(
        &message,
        &["hub.sha256 is \"abc\"", "64 hexadecimal digits"],
    );
    let invalid = invalid_for(&format!(
        "{VALID}\n[model]\nhub = {{ repo = \"no-slash\", file = \"m.gguf\", sha256 = \"abc\" }}\n"
    ));
    assert_eq!(invalid.key, "model.hub.repo");
    let message = error_for(&format!("{VALID}\n[model]\npath = \"modelo.bin\"\n"));
    assert_contains(&message, &["allowed: the path of a .gguf file"]);
}

/// What teams publish: a checkpoint or an adapter (no `file`), a GGUF pinned by a commit
/// without its sha256; a branch without sha256, a `base` on a GGUF or an unknown quantisation
/// say what to write.
#[test]
fn the_model_may_be_a_checkpoint_an_adapter_or_a_gguf_pinned_by_a_commit() {
    let commit = "0123456789abcdef0123456789abcdef01234567";
    let space = parse(&format!("{VALID}\n[model]\nhub = {{ repo = \"equipo/adaptador\", revision = \"{commit}\" }}\nbase = {{ repo = \"google/gemma-2b-it\" }}\nquantization = \"Q8_0\"\n"), "space.toml").unwrap();
    assert_eq!(space.model.quantization, "q8_0");
    match space.model.source {
        space::ModelSource::HubCheckpoint {
            repo,
            revision,
            base: Some((base, base_revision)),
        } => {
            assert_eq!(
                (
                    repo.as_str(),
                    revision.as_str(),
                    base.as_str(),
                    base_revision.as_str()
                ),
                ("equipo/adaptador", commit, "google/gemma-2b-it", "main")
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        parse(VALID, "space.toml").unwrap().model.quantization,
        "q4_k_m"
    );
    let pinned = parse(&format!("{VALID}\n[model]\nhub = {{ repo = \"a/b\", file = \"m.gguf\", revision = \"{commit}\" }}\n"), "space.toml").unwrap();
    assert!(matches!(
        pinned.model.source,
        space::ModelSource::Hub { sha256: None, .. }
    ));
    let message = error_for(&format!(
        "{VALID}\n[model]\nhub = {{ repo = \"a/b\", file = \"m.gguf\" }}\n"
    ));
    assert_contains(
        &message,
        &["hub.revision is \"main\"", "40-digit commit", "sha256"],
    );
    let message = error_for(&format!(
        "{VALID}\n[model]\ncatalog = \"smollm2-135m\"\nbase = {{ repo = \"a/b\" }}\n"
    ));
    assert_contains(&message, &["base is set", "LoRA adapter"]);
    let message = error_for(&format!(
        "{VALID}\n[model]\nhub = {{ repo = \"a/b\", revision = \"{commit}\" }}\nquantization = \"q2_k\"\n"
    ));
    assert_contains(&message, &["quantization is \"q2_k\"", "q4_k_m, q8_0, f16"]);
}

#[test]
fn a_remote_backend_needs_an_http_address() {
    let space = parse(&format!("{VALID}\n[server]\nbackend = \"remote\"\nurl = \"https://endpoint.example/v1/\"\ntoken_env = \"UPSTREAM_TOKEN\"\n"), "space.toml").unwrap();
    match space.backend {
        space::ServerBackend::Remote(upstream) => assert_eq!(
            (upstream.url.as_str(), upstream.token_env.as_deref()),
            ("https://endpoint.example/v1", Some("UPSTREAM_TOKEN"))
        ),
        other => panic!("{other:?}"),
    }
    let message = error_for(&format!("{VALID}\n[server]\nbackend = \"remote\"\n"));
    assert_contains(&message, &["key `server`", "url is missing"]);
    let message = error_for(&format!("{VALID}\n[server]\nbackend = \"remoto\"\n"));
    assert_contains(
        &message,
        &["backend is \"remoto\"", "allowed: \"local\"", "\"remote\""],
    );
    let message = error_for(&format!(
        "{VALID}\n[server]\nbackend = \"remote\"\nurl = \"ftp://x/v1\"\n"
    ));
    assert_contains(&message, &["allowed: an http(s) address"]);
}

/// `[browser] model` takes `[model]`'s sources; left out, the server picks (its own model when
/// it fits a browser), and a wrong table says what is allowed.
#[test]
fn browser_model_takes_the_sources_of_model() {
    use space::ModelSource;
    assert_eq!(parse(VALID, "space.toml").unwrap().browser.model, None);
    let catalogue = format!("{VALID}\n[browser]\nmodel = \"smollm2-135m\"\n");
    assert_eq!(
        parse(&catalogue, "space.toml").unwrap().browser.model,
        Some(ModelSource::Catalog("smollm2-135m".into()))
    );
    let path = format!("{VALID}\n[browser.model]\npath = \"modelo-q4_k_m.gguf\"\n");
    assert_eq!(
        parse(&path, "space.toml").unwrap().browser.model,
        Some(ModelSource::Path("modelo-q4_k_m.gguf".into()))
    );
    let both =
        format!("{VALID}\n[browser.model]\ncatalog = \"smollm2-135m\"\npath = \"modelo.gguf\"\n");
    assert_contains(&error_for(&both), &["browser.model", "exactly one of"]);
    let unknown = format!("{VALID}\n[browser.model]\nfile = \"modelo.gguf\"\n");
    assert_contains(&error_for(&unknown), &["browser.model", "allowed"]);
}
