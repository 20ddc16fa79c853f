//! The server's answer to the pages' questions ([`app::facts::ServerFacts`]): which models it
//! runs and how they did, and the answers visitors stored.

use std::sync::Arc;

use app::facts::{ModelFacts, ModelRole, ServerFacts};
use app::feedback::StoredAnswer;

use crate::browser_model::BrowserModel;
use crate::feedback::FeedbackStore;
use crate::inference::Inference;

pub struct Facts {
    pub inference: Arc<Inference>,
    /// `[compare]`'s base model, when configured.
    pub compare: Option<Arc<Inference>>,
    pub browser_model: Arc<BrowserModel>,
    /// The upstream's model name, for `[server] backend = "remote"`.
    pub remote_model: Option<String>,
    /// The feedback database, or why it could not be opened.
    pub store: Result<Arc<FeedbackStore>, String>,
}

impl Facts {
    /// One of the Space's models, as permalinks record it.
    pub fn model(&self, role: ModelRole) -> Option<ModelFacts> {
        self.models().into_iter().find(|facts| facts.role == role)
    }
}

impl ServerFacts for Facts {
    fn models(&self) -> Vec<ModelFacts> {
        let mut server = self.inference.facts(ModelRole::Server);
        if let Some(upstream) = &self.remote_model {
            let answers = server.answers;
            let speed = server.decode_tokens_per_second;
            server = ModelFacts::named(ModelRole::Server, upstream.clone(), "remote");
            server.backend = "remote".into();
            server.status = "remote".into();
            server.ready = true;
            (server.answers, server.decode_tokens_per_second) = (answers, speed);
        }
        let mut models = vec![server];
        models.extend(self.compare.as_ref().map(|compare| compare.facts(ModelRole::Compare)));
        models.push(self.browser_model.facts());
        models
    }

    fn answer(&self, id: &str) -> Result<Option<StoredAnswer>, String> {
        let store = self.store.as_ref().map_err(Clone::clone)?;
        store.get(id).map_err(|error| error.to_string())
    }
}
