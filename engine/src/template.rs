//! Chat templates: the Jinja template a model ships in `tokenizer.chat_template`, rendered
//! with minijinja and the conventions of Hugging Face's `apply_chat_template`.

use minijinja::{Environment, Error, ErrorKind, context};

use crate::error::{EngineError, Result};
use wire::chat::ChatMessage;

/// Used when a model ships no template: ChatML, which most instruction-tuned small models
/// (Qwen, SmolLM, many fine-tunes) were trained on.
pub const CHATML: &str = "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

/// Gemma's turn format, for Gemma files that ship no template (base models).
pub const GEMMA: &str = "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{% set first_user_prefix = messages[0]['content'] + '\n\n' %}{% set loop_messages = messages[1:] %}{% else %}{% set first_user_prefix = '' %}{% set loop_messages = messages %}{% endif %}{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}{{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else '') + message['content'] | trim + '<end_of_turn>\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}";

pub struct ChatTemplate {
    environment: Environment<'static>,
    source: String,
    bos_token: String,
    eos_token: String,
}

/// Template instructions one rendering may run. The longest conversation the API takes
/// (256 messages) costs the catalogue's templates under 40,000; a template that loops for
/// ever (a GGUF or space.toml can hold any template) fails instead of holding a core.
pub const TEMPLATE_FUEL: u64 = 2_000_000;

impl ChatTemplate {
    pub fn new(source: &str, bos_token: &str, eos_token: &str) -> Result<Self> {
        let mut environment = Environment::new();
        // Templates are written for Python's Jinja: str methods, `loop.last`, trimmed blocks.
        environment
            .set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        environment.set_fuel(Some(TEMPLATE_FUEL));
        environment.set_trim_blocks(true);
        environment.set_lstrip_blocks(true);
        environment.add_function(
            "raise_exception",
            |message: String| -> Result<String, Error> {
                Err(Error::new(ErrorKind::InvalidOperation, message))
            },
        );
        environment.add_function("strftime_now", strftime_now);
        environment
            .add_template_owned("chat", source.to_owned())
            .map_err(|error| EngineError::Template(format!("it does not parse: {error}")))?;
        Ok(Self {
            environment,
            source: source.to_owned(),
            bos_token: bos_token.to_owned(),
            eos_token: eos_token.to_owned(),
        })
    }

    /// The template's Jinja text.
    pub fn source(&self) -> &str {
        &self.source
    }

    pub fn render(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> Result<String> {
        let template = self
            .environment
            .get_template("chat")
            .map_err(|error| EngineError::Template(error.to_string()))?;
        template
            .render(context! {
                messages => messages,
                add_generation_prompt => add_generation_prompt,
                bos_token => self.bos_token,
                eos_token => self.eos_token,
            })
            .map_err(|error| match error.kind() {
                ErrorKind::OutOfFuel => EngineError::Template(format!(
                    "the chat template ran more than {TEMPLATE_FUEL} instructions without finishing; check its loops"
                )),
                _ => EngineError::Template(error.to_string()),
            })
    }
}

/// Today's date in a strftime format (templates such as Llama 3.x print it in the system turn).
fn strftime_now(format: String) -> String {
    let days = web_time::SystemTime::now()
        .duration_since(web_time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs() / 86_400) as i64;
    let (year, month, day) = civil_from_days(days);
    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    format
        .replace("%Y", &year.to_string())
        .replace("%m", &format!("{month:02}"))
        .replace("%d", &format!("{day:02}"))
        .replace("%B", MONTHS[(month - 1) as usize])
        .replace("%b", &MONTHS[(month - 1) as usize][..3])
}

/// Gregorian date of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use wire::chat::Role;

    #[test]
    fn chatml_fallback_renders_the_exact_prompt() {
        let template = ChatTemplate::new(CHATML, "", "<|im_end|>").unwrap();
        let messages = [
            ChatMessage::new(Role::System, "Eres útil."),
            ChatMessage::new(Role::User, "¿Hola?"),
        ];
        assert_eq!(
            template.render(&messages, true).unwrap(),
            "<|im_start|>system\nEres útil.<|im_end|>\n<|im_start|>user\n¿Hola?<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    #[test]
    fn gemma_fallback_renders_the_exact_prompt() {
        let template = ChatTemplate::new(GEMMA, "<bos>", "<eos>").unwrap();
        let messages = [
            ChatMessage::new(Role::System, "Eres útil."),
            ChatMessage::new(Role::User, " ¿Hola? "),
            ChatMessage::new(Role::Assistant, "¡Hola!"),
            ChatMessage::new(Role::User, "Adiós"),
        ];
        assert_eq!(
            template.render(&messages, true).unwrap(),
            "<bos><start_of_turn>user\nEres útil.\n\n¿Hola?<end_of_turn>\n<start_of_turn>model\n¡Hola!<end_of_turn>\n<start_of_turn>user\nAdiós<end_of_turn>\n<start_of_turn>model\n"
        );
        let error = template
            .render(&[ChatMessage::new(Role::Assistant, "x")], true)
            .unwrap_err()
            .to_string();
        assert!(error.contains("must alternate"), "{error}");
    }

    #[test]
    fn raise_exception_becomes_a_template_error() {
        let template =
            ChatTemplate::new("{{ raise_exception('solo user/assistant') }}", "", "").unwrap();
        let error = template.render(&[], true).unwrap_err().to_string();
        assert!(error.contains("solo user/assistant"), "{error}");
    }

    #[test]
    fn a_template_that_never_ends_runs_out_of_fuel() {
        let endless =
            "{% for a in range(10000) %}{% for b in range(10000) %}x{% endfor %}{% endfor %}";
        let template = ChatTemplate::new(endless, "", "").unwrap();
        let error = template.render(&[], true).unwrap_err().to_string();
        assert!(error.contains("instructions without finishing"), "{error}");
        // The longest conversation the API takes renders well within the fuel.
        let conversation: Vec<ChatMessage> = (0..256)
            .map(|turn| {
                ChatMessage::new(
                    if turn % 2 == 0 {
                        Role::User
                    } else {
                        Role::Assistant
                    },
                    "¿Qué tal?",
                )
            })
            .collect();
        for source in [CHATML, GEMMA] {
            assert!(
                ChatTemplate::new(source, "<bos>", "<eos>")
                    .unwrap()
                    .render(&conversation, true)
                    .is_ok()
            );
        }
    }

    #[test]
    fn python_string_methods_work() {
        let template =
            ChatTemplate::new("{{ messages[0]['content'].strip().upper() }}", "", "").unwrap();
        assert_eq!(
            template
                .render(&[ChatMessage::new(Role::User, "  hola ")], false)
                .unwrap(),
            "HOLA"
        );
    }

    #[test]
    fn dates_are_gregorian() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_818), (2026, 12, 31));
    }
}
