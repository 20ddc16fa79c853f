//! space.toml's `[chat]`, the API and the chat page's settings take every bound from
//! `wire::limits`: a value each of them accepts the others accept, and one step outside is
//! refused by space.toml and the API and brought back inside by the chat page.

use app::conversation::{BackendChoice, Settings};
use server::validation::validate;
use space::ChatDefaults;
use wire::limits::{self, Bound};
use wire::openai::ChatCompletionRequest;
use wire::{ChatMessage, Role};

const SPACE: &str = r#"
[project]
title = "Proyecto"
summary = "Resumen"
motivation = "Motivación"
impact = "Impacto"
future = ["Idea"]
ods = [4]
languages = ["es"]
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

/// One bounded setting as each room writes it.
struct Setting {
    bound: Bound<f64>,
    /// The same setting in a request, in space.toml's `[chat]` and in the chat's settings.
    in_request: fn(&mut ChatCompletionRequest, f64),
    in_toml: fn(f64) -> String,
    in_chat: fn(&mut Settings, f64),
    from_chat: fn(&Settings) -> f64,
    /// The smallest step a value can take (whole numbers for `max_tokens`).
    step: f64,
}

fn settings() -> [Setting; 3] {
    let max_tokens = limits::MAX_TOKENS;
    [
        Setting {
            bound: limits::TEMPERATURE,
            in_request: |request, value| request.temperature = Some(value),
            in_toml: |value| format!("temperature = {value:?}"),
            in_chat: |settings, value| settings.temperature = value,
            from_chat: |settings| settings.temperature,
            step: 0.01,
        },
        Setting {
            bound: limits::TOP_P,
            in_request: |request, value| request.top_p = Some(value),
            in_toml: |value| format!("top_p = {value:?}"),
            in_chat: |settings, value| settings.top_p = value,
            from_chat: |settings| settings.top_p,
            step: 0.01,
        },
        Setting {
            bound: Bound {
                name: max_tokens.name,
                min: max_tokens.min.into(),
                max: max_tokens.max.into(),
                default: max_tokens.default.into(),
            },
            in_request: |request, value| request.max_tokens = Some(value as u64),
            in_toml: |value| format!("max_tokens = {}", value as i64),
            in_chat: |settings, value| settings.max_tokens = value as u32,
            from_chat: |settings| f64::from(settings.max_tokens),
            step: 1.0,
        },
    ]
}

fn toml_accepts(line: &str) -> bool {
    space::parse(&format!("{SPACE}\n[chat]\n{line}\n"), "space.toml").is_ok()
}

fn api_accepts(setting: &Setting, value: f64) -> bool {
    let mut request = ChatCompletionRequest {
        messages: vec![ChatMessage::new(Role::User, "Hola")],
        ..ChatCompletionRequest::default()
    };
    (setting.in_request)(&mut request, value);
    validate(request, &ChatDefaults::default(), &space::Limits::default()).is_ok()
}

fn chat_keeps(setting: &Setting, value: f64) -> f64 {
    let mut settings = Settings {
        system_prompt: String::new(),
        temperature: limits::TEMPERATURE.default,
        top_p: limits::TOP_P.default,
        max_tokens: limits::MAX_TOKENS.default,
        backend: BackendChoice::Auto,
        browser_threads: None,
    };
    (setting.in_chat)(&mut settings, value);
    (setting.from_chat)(&settings.clamped())
}

#[test]
fn space_toml_the_api_and_the_chat_agree_on_every_bound() {
    assert!(toml_accepts(""), "the base space.toml is valid");
    for setting in settings() {
        let Bound {
            name,
            min,
            max,
            default,
        } = setting.bound;
        for inside in [min, default, max] {
            assert!(
                toml_accepts(&(setting.in_toml)(inside)),
                "space.toml refuses {name} = {inside}"
            );
            assert!(
                api_accepts(&setting, inside),
                "the API refuses {name} = {inside}"
            );
            assert_eq!(
                chat_keeps(&setting, inside),
                inside,
                "the chat changes {name} = {inside}"
            );
        }
        for (outside, nearest) in [(min - setting.step, min), (max + setting.step, max)] {
            assert!(
                !toml_accepts(&(setting.in_toml)(outside)),
                "space.toml takes {name} = {outside}"
            );
            assert!(
                !api_accepts(&setting, outside),
                "the API takes {name} = {outside}"
            );
            assert_eq!(
                chat_keeps(&setting, outside),
                nearest,
                "the chat keeps {name} = {outside}"
            );
        }
    }
}

#[test]
fn the_temperature_range_is_the_same_everywhere() {
    let hot = 2.5;
    assert!(!toml_accepts(&format!("temperature = {hot}")));
    assert!(!api_accepts(&settings()[0], hot));
    assert_eq!(chat_keeps(&settings()[0], hot), limits::TEMPERATURE.max);
    assert_eq!(
        ChatDefaults::default().temperature,
        limits::TEMPERATURE.default
    );
}
