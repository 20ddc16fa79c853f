//! Interface strings in Spanish (first) and English. The team's own texts from `space.toml` are
//! shown as written; only Vitrina's words change with the switch.

use serde::{Deserialize, Serialize};

/// The cookie that remembers the visitor's choice, read by the server so the first paint is
/// already in the right language (nothing changes on hydration).
pub const LANG_COOKIE: &str = "vitrina_lang";

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Lang {
    #[default]
    Es,
    En,
}

impl Lang {
    pub fn code(self) -> &'static str {
        match self {
            Lang::Es => "es",
            Lang::En => "en",
        }
    }

    pub fn other(self) -> Lang {
        match self {
            Lang::Es => Lang::En,
            Lang::En => Lang::Es,
        }
    }

    /// The visitor's stored choice in a `Cookie` header; Spanish when there is none.
    pub fn from_cookie_header(header: &str) -> Lang {
        header
            .split(';')
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(name, _)| *name == LANG_COOKIE)
            .map_or(Lang::Es, |(_, value)| if value.trim() == "en" { Lang::En } else { Lang::Es })
    }

    /// The `Set-Cookie`-style value that stores this choice for a year.
    pub fn cookie(self) -> String {
        format!("{LANG_COOKIE}={}; Path=/; Max-Age=31536000; SameSite=Lax", self.code())
    }

    pub fn strings(self) -> &'static Strings {
        match self {
            Lang::Es => &ES,
            Lang::En => &EN,
        }
    }
}

pub struct Strings {
    pub skip_to_content: &'static str,
    /// Label of the switch, written in the language it switches to.
    pub switch_label: &'static str,
    pub switch_aria: &'static str,
    pub motivation: &'static str,
    pub impact: &'static str,
    pub future: &'static str,
    pub ods: &'static str,
    pub ods_prefix: &'static str,
    pub languages: &'static str,
    pub license: &'static str,
    pub datasets: &'static str,
    pub models: &'static str,
    pub team: &'static str,
    pub hub_profile: &'static str,
    pub open_dataset: &'static str,
    pub open_model: &'static str,
    pub footer: &'static str,
    pub chat: &'static str,
    pub chat_placeholder: &'static str,
    pub chat_label: &'static str,
    pub send: &'static str,
    pub stop: &'static str,
    pub clear: &'static str,
    pub you: &'static str,
    pub model: &'static str,
    pub try_example: &'static str,
    pub chat_needs_js: &'static str,
    pub regenerate: &'static str,
    pub edit_last: &'static str,
    pub context: &'static str,
    pub add_context: &'static str,
    pub settings: &'static str,
    pub system_prompt: &'static str,
    pub temperature: &'static str,
    pub top_p: &'static str,
    pub max_tokens: &'static str,
    pub reset_settings: &'static str,
    /// Followed by the position in the queue.
    pub queue_position: &'static str,
    /// Followed by a number of seconds.
    pub queue_wait: &'static str,
    pub failed_busy: &'static str,
    pub failed_loading: &'static str,
    pub failed_too_long: &'static str,
    pub failed_connection: &'static str,
    pub failed_other: &'static str,
    pub failed_browser: &'static str,
    pub in_browser: &'static str,
    pub backend: &'static str,
    pub backend_auto: &'static str,
    pub backend_server: &'static str,
    pub backend_browser: &'static str,
    /// Followed by "45 / 103 MB".
    pub downloading_model: &'static str,
    pub loading_cached_model: &'static str,
    pub preparing_model: &'static str,
    pub server_loading: &'static str,
    pub server_disabled: &'static str,
    pub server_failed: &'static str,
    pub answers_in_browser: &'static str,
    pub try_later: &'static str,
    /// Followed by a number of seconds.
    pub time_left: &'static str,
    pub error_detail: &'static str,
    pub copy_code: &'static str,
    pub copy_answer: &'static str,
    pub copied: &'static str,
    pub on_server: &'static str,
    pub decimal_comma: bool,
    pub use_api: &'static str,
    pub use_api_intro: &'static str,
    pub with_curl: &'static str,
    pub with_python: &'static str,
}

pub const ES: Strings = Strings {
    skip_to_content: "Saltar al contenido",
    switch_label: "English",
    switch_aria: "Switch the interface to English",
    motivation: "Motivación",
    impact: "Impacto",
    future: "Ideas de futuro",
    ods: "Objetivos de Desarrollo Sostenible",
    ods_prefix: "ODS",
    languages: "Variedades lingüísticas",
    license: "Licencia",
    datasets: "Conjuntos de datos",
    models: "Modelos",
    team: "Equipo",
    hub_profile: "Perfil en Hugging Face",
    open_dataset: "Ver el conjunto de datos en Hugging Face",
    open_model: "Ver el modelo en Hugging Face",
    footer: "Demo del hackathon #Somos600M, hecha con Vitrina.",
    chat: "Prueba el modelo",
    chat_placeholder: "Escribe tu pregunta…",
    chat_label: "Tu pregunta",
    send: "Enviar",
    stop: "Detener",
    clear: "Borrar la conversación",
    you: "Tú",
    model: "Modelo",
    try_example: "Prueba un ejemplo:",
    chat_needs_js: "El chat necesita JavaScript.",
    regenerate: "Regenerar la respuesta",
    edit_last: "Editar la última pregunta",
    context: "Contexto",
    add_context: "Añadir un texto de contexto (opcional)",
    settings: "Ajustes del modelo",
    system_prompt: "Instrucción de sistema",
    temperature: "Temperatura (0 = siempre la palabra más probable)",
    top_p: "top_p (probabilidad acumulada)",
    max_tokens: "Longitud máxima de la respuesta (tokens)",
    reset_settings: "Restablecer los valores del equipo",
    queue_position: "En la cola: tienes el puesto",
    queue_wait: "espera estimada: unos",
    failed_busy: "Ahora mismo hay mucha gente usando el modelo. Vuelve a intentarlo en unos segundos.",
    failed_loading: "El modelo todavía se está cargando. Vuelve a intentarlo en un momento.",
    failed_too_long: "La conversación es demasiado larga para el modelo. Bórrala o escribe un mensaje más corto.",
    failed_connection: "Se perdió la conexión con el servidor. Comprueba tu conexión y vuelve a intentarlo.",
    failed_other: "El modelo no pudo responder. Vuelve a intentarlo.",
    failed_browser: "El modelo no pudo funcionar en tu navegador.",
    in_browser: "tu navegador",
    backend: "Dónde responde el modelo",
    backend_auto: "Automático: el servidor y, si no puede, tu navegador",
    backend_server: "Solo el servidor",
    backend_browser: "Solo tu navegador (descarga el modelo una vez)",
    downloading_model: "Descargando el modelo a tu navegador (solo la primera vez):",
    loading_cached_model: "Cargando el modelo guardado en tu navegador:",
    preparing_model: "Preparando el modelo en tu navegador…",
    server_loading: "El modelo del servidor todavía se está cargando.",
    server_disabled: "Este Space no ejecuta el modelo en su servidor.",
    server_failed: "El modelo del servidor no está disponible:",
    answers_in_browser: "Mientras tanto, las respuestas vienen de tu navegador (descarga el modelo una sola vez).",
    try_later: "Vuelve a intentarlo más tarde.",
    time_left: "quedan unos",
    error_detail: "Detalle técnico",
    copy_code: "Copiar",
    copy_answer: "Copiar la respuesta",
    copied: "¡Copiado!",
    on_server: "servidor",
    decimal_comma: true,
    use_api: "Usar vía API",
    use_api_intro: "El modelo de esta demo responde con la API de OpenAI (chat completions): sirven sus bibliotecas y herramientas.",
    with_curl: "Con curl",
    with_python: "Con Python (paquete openai)",
};

pub const EN: Strings = Strings {
    skip_to_content: "Skip to content",
    switch_label: "Español",
    switch_aria: "Cambiar la interfaz a español",
    motivation: "Motivation",
    impact: "Impact",
    future: "Future ideas",
    ods: "Sustainable Development Goals",
    ods_prefix: "SDG",
    languages: "Language varieties",
    license: "License",
    datasets: "Datasets",
    models: "Models",
    team: "Team",
    hub_profile: "Hugging Face profile",
    open_dataset: "View the dataset on Hugging Face",
    open_model: "View the model on Hugging Face",
    footer: "#Somos600M hackathon demo, made with Vitrina.",
    chat: "Try the model",
    chat_placeholder: "Type your question…",
    chat_label: "Your question",
    send: "Send",
    stop: "Stop",
    clear: "Clear the conversation",
    you: "You",
    model: "Model",
    try_example: "Try an example:",
    chat_needs_js: "The chat needs JavaScript.",
    regenerate: "Regenerate the answer",
    edit_last: "Edit the last question",
    context: "Context",
    add_context: "Add a context text (optional)",
    settings: "Model settings",
    system_prompt: "System prompt",
    temperature: "Temperature (0 = always the likeliest word)",
    top_p: "top_p (cumulative probability)",
    max_tokens: "Longest answer (tokens)",
    reset_settings: "Reset to the team's values",
    queue_position: "In the queue: your place is",
    queue_wait: "estimated wait: about",
    failed_busy: "Many people are using the model right now. Try again in a few seconds.",
    failed_loading: "The model is still loading. Try again in a moment.",
    failed_too_long: "The conversation is too long for the model. Clear it or write a shorter message.",
    failed_connection: "The connection to the server was lost. Check your connection and try again.",
    failed_other: "The model could not answer. Try again.",
    failed_browser: "The model could not run in your browser.",
    in_browser: "your browser",
    backend: "Where the model answers",
    backend_auto: "Automatic: the server and, when it cannot, your browser",
    backend_server: "The server only",
    backend_browser: "Your browser only (downloads the model once)",
    downloading_model: "Downloading the model to your browser (first time only):",
    loading_cached_model: "Loading the model stored in your browser:",
    preparing_model: "Getting the model ready in your browser…",
    server_loading: "The server's model is still loading.",
    server_disabled: "This Space runs no model on its server.",
    server_failed: "The server's model is not available:",
    answers_in_browser: "Meanwhile, answers come from your browser (it downloads the model once).",
    try_later: "Try again later.",
    time_left: "about",
    error_detail: "Technical detail",
    copy_code: "Copy",
    copy_answer: "Copy the answer",
    copied: "Copied!",
    on_server: "server",
    decimal_comma: false,
    use_api: "Use it through the API",
    use_api_intro: "This demo's model answers through OpenAI's API (chat completions): its libraries and tools work.",
    with_curl: "With curl",
    with_python: "With Python (openai package)",
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookie_round_trips_and_defaults_to_spanish() {
        assert_eq!(Lang::from_cookie_header(""), Lang::Es);
        assert_eq!(Lang::from_cookie_header("a=b; vitrina_lang=en"), Lang::En);
        assert_eq!(Lang::from_cookie_header("vitrina_lang=xx"), Lang::Es);
        let stored = Lang::En.cookie();
        let pair = stored.split(';').next().unwrap();
        assert_eq!(Lang::from_cookie_header(pair), Lang::En);
    }
}
