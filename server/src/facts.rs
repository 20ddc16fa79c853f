//! The server's answer to the pages' questions ([`app::facts::ServerFacts`]): which models it
//! runs and how they did, and the answers visitors stored.

use std::sync::{Arc, Mutex};

use app::cards::CardKind;
use app::facts::{FetchedCard, ModelFacts, ModelRole, ServerFacts, StorageFacts};

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
    /// The key that signs answers and checks the feedback on them.
    pub receipts: Arc<crate::receipts::Receipts>,
    /// Where the feedback and the key are kept, and whether that outlives a restart.
    pub storage: StorageFacts,
    pub cards: Arc<FetchedCards>,
}

/// The cards fetched from the Hub at start-up, for what `[cards]` leaves out.
#[derive(Default)]
pub struct FetchedCards(Mutex<Vec<(CardKind, FetchedCard)>>);

impl FetchedCards {
    /// Fetches the card of `repo` into `cache` and keeps where it is, or why it is not.
    pub fn fetch(&self, cache: &engine::cache::ModelCache, kind: CardKind, repo: &str) {
        let endpoint = engine::cache::hub_endpoint();
        let card = match crate::hub_cards::fetch_card(cache.dir(), &endpoint, kind, repo) {
            Ok(path) => FetchedCard::Fetched {
                repo: repo.to_owned(),
                path,
            },
            Err(error) => {
                tracing::warn!(%repo, %error, "the card could not be fetched; the judges' page says so");
                FetchedCard::Failed {
                    repo: repo.to_owned(),
                    reason: error,
                }
            }
        };
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push((kind, card));
    }
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
            server = ModelFacts::named(ModelRole::Server, upstream.clone(), wire::device::REMOTE);
            server.backend = "remote".into();
            server.status = "remote".into();
            server.ready = true;
            (server.answers, server.decode_tokens_per_second) = (answers, speed);
        }
        let mut models = vec![server];
        models.extend(
            self.compare
                .as_ref()
                .map(|compare| compare.facts(ModelRole::Compare)),
        );
        models.push(self.browser_model.facts());
        models
    }

    fn fetched_card(&self, kind: CardKind) -> Option<FetchedCard> {
        let cards = self
            .cards
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        cards
            .iter()
            .find(|(fetched, _)| *fetched == kind)
            .map(|(_, card)| card.clone())
    }

    fn storage(&self) -> (StorageFacts, Result<(), String>) {
        let opened = self.store.as_ref().map(drop).map_err(Clone::clone);
        (self.storage.clone(), opened)
    }
}
