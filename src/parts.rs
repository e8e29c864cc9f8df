//! The one place where paperboy's parts are built from the settings and handed to each
//! other: the store, the source, the mailer, the links and the edition runner. The CLI
//! builds them for one command; `serve` for the daemon's lifetime and gives each of the
//! web pages, the schedule and the admin socket the parts it uses. Nothing else holds them
//! all.

use std::sync::Arc;

use anyhow::Context as _;

use crate::commands;
use crate::config::Settings;
use crate::edition::{self, Editions};
use crate::mail::Mailer;
use crate::source::{HfSource, Pages, Source};
use crate::store::Store;
use crate::telemetry::metrics::Metrics;
use crate::tokens::{Links, TokenKey};

pub struct Parts {
    pub store: Store,
    pub metrics: Arc<Metrics>,
    pub links: Links,
    pub source: Arc<Source>,
    pub mailer: Mailer,
    pub editions: Arc<Editions>,
    pub commands: Arc<commands::Context>,
}

impl Parts {
    /// Opens the store (refused while another process holds it) and builds the rest.
    pub fn build(settings: &Settings) -> anyhow::Result<Self> {
        Self::build_with(settings, HfSource::new(&settings.source)?.into())
    }

    /// [`Parts::build`] with the listings taken from `pages` rather than from the sources
    /// `settings.source` names.
    pub fn build_with(settings: &Settings, pages: Pages) -> anyhow::Result<Self> {
        let dir = &settings.data_dir;
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating the data directory {}", dir.display()))?;
        let store = Store::open(dir, settings.store.engine)?;
        let links = Links::new(
            TokenKey::load_or_create(&settings.secret_key_path())?,
            settings.public_base(),
        );
        let metrics = Arc::new(Metrics::default());
        metrics.set_last_fetch_ok(store.last_fetch_ok()?);
        let source = Arc::new(Source::new(pages, store.clone(), metrics.clone()));
        let mailer = Mailer::new(&settings.mail, &settings.outbox_dir())?
            .with_return_key(links.key().clone());
        let editions = Arc::new(Editions::new(edition::Parts {
            store: store.clone(),
            source: source.clone(),
            mailer: mailer.clone(),
            links: links.clone(),
            digest: settings.digest.clone(),
            look: crate::render::Look {
                thumbnails: settings.digest.thumbnails,
                postal_address: settings.mail.postal_address.clone(),
            },
            smtp: settings.mail.smtp.clone(),
            catch_up_hours: settings.schedule.catch_up_hours,
            metrics: metrics.clone(),
        }));
        let commands = Arc::new(commands::Context::new(
            store.clone(),
            editions.clone(),
            settings.schedule.clone(),
            settings.digest.clone(),
            settings.secret_key_path(),
            crate::bounce::Intake::new(
                store.clone(),
                links.key().clone(),
                &settings.mail,
                mailer.list_id(),
                metrics.clone(),
            ),
        ));
        Ok(Self {
            store,
            metrics,
            links,
            source,
            mailer,
            editions,
            commands,
        })
    }
}
