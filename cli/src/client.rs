//! `keel run | list | cancel | savepoint`: find the leader (through ZooKeeper, or `--rest`),
//! then call its REST API.

use std::time::Duration;

use anyhow::{bail, Context};
use keel_conf::{Config, HaType};
use serde_json::Value;

/// The REST address of the acting leader.
pub async fn leader_rest(config: &Config, explicit: Option<&str>) -> anyhow::Result<String> {
    if let Some(addr) = explicit {
        return Ok(addr.to_string());
    }
    if config.ha_type != HaType::Zookeeper {
        return Ok(format!("{}:{}", config.rest_address, config.rest_port));
    }
    let mut settings = keel_ha::ZkSettings::from_config(config).context("no high-availability.zookeeper.quorum set")?;
    settings.session_timeout = settings.session_timeout.min(Duration::from_secs(10));
    let client = settings.connect().await?;
    let leader = keel_ha::retrieval::read_leader(&client).await;
    keel_ha::session::close(client, Duration::from_secs(1)).await;
    match leader? {
        Some(l) => Ok(l.rest_address),
        None => {
            bail!("no leader: no dispatcher of cluster {} is leading right now (see keel status)", config.cluster_id)
        }
    }
}

pub struct Rest {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl Rest {
    /// A client of the REST API at `addr` with the configuration's token and transport:
    /// `https` trusting `security.ssl.rest.truststore` (else `security.ssl.rest.cert`) when
    /// `security.ssl.rest.enabled` is set.
    pub fn new(addr: &str, config: &Config) -> anyhow::Result<Self> {
        let mut builder = reqwest::Client::builder().timeout(Duration::from_secs(120));
        if let Some(roots) = keel_proto::security::rest_client_roots(config).map_err(anyhow::Error::msg)? {
            let certs = reqwest::Certificate::from_pem_bundle(&roots).context("the REST truststore is not PEM")?;
            builder = builder.tls_certs_only(certs);
        }
        let base = format!("{}://{addr}", keel_proto::security::rest_scheme(config));
        Ok(Self { base, token: config.rest_auth_token.clone(), http: builder.build()? })
    }

    pub async fn call(&self, method: reqwest::Method, path: &str, body: Option<String>) -> anyhow::Result<Value> {
        let mut req = self.http.request(method.clone(), format!("{}{path}", self.base));
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.body(b);
        }
        let resp = req.send().await.with_context(|| format!("{method} {}{path}", self.base))?;
        let status = resp.status();
        let text = resp.text().await?;
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if !status.is_success() {
            let msg = value["errors"]
                .as_array()
                .map(|e| e.iter().filter_map(Value::as_str).collect::<Vec<_>>().join("; "))
                .unwrap_or_else(|| value.to_string());
            bail!("{method} {path}: HTTP {}: {msg}", status.as_u16());
        }
        Ok(value)
    }
}
