//! README.md's Hugging Face Space front matter must agree with space.toml: the Hub links the
//! Space to the models and datasets listed there.

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Deserialize)]
struct FrontMatter {
    title: String,
    emoji: String,
    #[serde(rename = "colorFrom")]
    color_from: String,
    #[serde(rename = "colorTo")]
    color_to: String,
    sdk: String,
    app_port: u16,
    short_description: String,
    models: Vec<String>,
    datasets: Vec<String>,
    tags: Vec<String>,
    license: String,
    suggested_hardware: String,
    custom_headers: BTreeMap<String, String>,
    #[serde(flatten)]
    others: BTreeMap<String, serde_yaml_ng::Value>,
}

fn root_file(name: &str) -> String {
    std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(name),
    )
    .unwrap()
}

fn front_matter() -> FrontMatter {
    let readme = root_file("README.md");
    let yaml = readme
        .strip_prefix("---\n")
        .and_then(|rest| rest.split_once("\n---\n"))
        .map(|(yaml, _)| yaml)
        .expect("README.md must start with a `---` YAML block");
    serde_yaml_ng::from_str(yaml).expect("README front matter is valid YAML with every Space key")
}

#[test]
fn front_matter_declares_a_docker_space_on_port_7860() {
    let front = front_matter();
    assert_eq!(front.sdk, "docker");
    assert_eq!(front.app_port, 7860);
    assert_eq!(front.suggested_hardware, "t4-small");
    assert!(!front.title.is_empty() && !front.emoji.is_empty());
    let colors = [
        "red", "yellow", "green", "blue", "indigo", "purple", "pink", "gray",
    ];
    assert!(
        colors.contains(&front.color_from.as_str()) && colors.contains(&front.color_to.as_str())
    );
    // The Hub rejects longer short descriptions.
    assert!(
        front.short_description.chars().count() <= 60,
        "{}",
        front.short_description
    );
    assert!(front.tags.iter().any(|tag| tag == "somos600m"));
    assert!(
        front.others.is_empty(),
        "unexpected keys: {:?}",
        front.others.keys()
    );
}

/// On the Hub these headers come from the front matter, locally from the server: the same
/// values, or the browser's threads work in one place only.
#[test]
fn front_matter_sends_the_servers_isolation_headers() {
    let front = front_matter();
    let expected: BTreeMap<String, String> = wire::worker::ISOLATION_HEADERS
        .iter()
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect();
    assert_eq!(front.custom_headers, expected);
}

#[test]
fn front_matter_agrees_with_space_toml() {
    let front = front_matter();
    let space = app::space::parse(&root_file("space.toml"), "space.toml").unwrap();
    let ids = |repos: &[app::space::HubRepo]| {
        repos
            .iter()
            .map(|repo| repo.id.as_str().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        front.models,
        ids(&space.models),
        "README `models:` must list space.toml's [[models]] ids"
    );
    assert_eq!(
        front.datasets,
        ids(&space.datasets),
        "README `datasets:` must list space.toml's [[datasets]] ids"
    );
    assert_eq!(front.license, space.project.license.as_str());
}

#[test]
fn readme_documents_every_space_toml_key() {
    let readme = root_file("README.md");
    let keys = [
        "title",
        "summary",
        "motivation",
        "impact",
        "future",
        "ods",
        "languages",
        "license",
        "edition",
        "video",
        "kind",
        "name",
        "hub",
        "role",
        "links",
        "id",
        "description",
        "pregunta",
        "contexto",
        "system_prompt",
        "temperature",
        "top_p",
        "max_tokens",
        "max_concurrent",
        "max_queue",
        "max_input_tokens",
        "max_total_tokens",
        "max_concurrent_per_client",
        "requests_per_minute_per_client",
        "trusted_proxies",
        "model",
        "failover",
        "requantize",
        "catalog",
        "hub",
        "path",
        "chat_template",
        "backend",
        "url",
        "token_env",
        "connect_timeout_s",
        "read_timeout_s",
        "timeout_s",
        "special_tokens_in_messages",
        "prefix_cache_mb",
        "dpo_pairs_per_question",
        "dataset",
        "file",
    ];
    for key in keys {
        assert!(
            readme.contains(&format!("| `{key}` |")) || readme.contains(&format!("| `{key}` (")),
            "README does not document `{key}`"
        );
    }
    for code in app::idioma::VARIETIES {
        assert!(
            readme.contains(&format!("`{}`", code.code)),
            "README does not list idioma `{}`",
            code.code
        );
    }
}

/// What the Space's proxy expects (README `app_port`, the Hub's uid 1000) is what both images do.
#[test]
fn both_dockerfiles_agree_with_the_front_matter() {
    let port = front_matter().app_port;
    for name in ["Dockerfile", "Dockerfile.cuda"] {
        let dockerfile = root_file(name);
        let runtime = dockerfile.rsplit("\nFROM ").next().unwrap_or_default();
        assert!(
            runtime.contains(&format!("EXPOSE {port}")),
            "{name}: EXPOSE {port}"
        );
        assert!(
            runtime.contains(&format!("PORT={port}")),
            "{name}: PORT={port}"
        );
        assert!(
            runtime.contains("VITRINA_HOST=0.0.0.0"),
            "{name}: listen on every interface"
        );
        assert!(
            runtime.contains("--uid 1000 user") && runtime.contains("\nUSER 1000\n"),
            "{name}: runs as uid 1000"
        );
        assert!(
            dockerfile.contains("cargo xtask dist --out /dist --prefetch"),
            "{name}: the release build CI runs"
        );
    }
}
