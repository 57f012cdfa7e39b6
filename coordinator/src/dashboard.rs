//! The web dashboard (`GET /`): one self-contained page (no external assets) that reads the
//! REST API of the dispatcher that served it, and `GET /ha/contenders`, which it uses to show
//! the leader and its standbys.

use std::time::Duration;

use keel_ha::inspect::ContenderView;
use keel_ha::ZkSettings;

/// The page, embedded at build time.
pub const INDEX_HTML: &str = include_str!("dashboard/index.html");

/// The page as served. Test-only: `KEEL_TEST_DISABLE_DASHBOARD_SCRIPT=1` serves it without
/// its script (the static skeleton), so the dashboard test can be shown to fail.
pub fn page() -> &'static str {
    static PAGE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PAGE.get_or_init(|| {
        if std::env::var("KEEL_TEST_DISABLE_DASHBOARD_SCRIPT").is_ok_and(|v| v == "1") {
            tracing::error!("KEEL_TEST_DISABLE_DASHBOARD_SCRIPT=1: the dashboard is served without its script");
            match (INDEX_HTML.find("<script>"), INDEX_HTML.find("</script>")) {
                (Some(a), Some(b)) => format!("{}{}", &INDEX_HTML[..a], &INDEX_HTML[b + "</script>".len()..]),
                _ => INDEX_HTML.to_string(),
            }
        } else {
            INDEX_HTML.to_string()
        }
    })
}

/// How long one contenders read may take (connect included) before the request answers 503.
const READ_BOUND: Duration = Duration::from_secs(5);

/// Reads the latch contenders over one read-only ZooKeeper session of its own, opened on first
/// use and replaced after any error (an expired session is never reused).
pub struct ContenderReader {
    settings: ZkSettings,
    client: tokio::sync::Mutex<Option<zookeeper_client::Client>>,
}

impl ContenderReader {
    pub fn new(settings: ZkSettings) -> Self {
        Self { settings, client: tokio::sync::Mutex::new(None) }
    }

    /// Leading contender first, then the standbys in takeover order.
    ///
    /// # Notable errors
    /// A message naming the quorum or the znode when ZooKeeper cannot be read within 5 s.
    pub async fn read(&self) -> Result<Vec<ContenderView>, String> {
        // One read at a time: concurrent dashboard polls share the session.
        let mut guard = self.client.lock().await;
        let attempt = tokio::time::timeout(READ_BOUND, async {
            if guard.is_none() {
                *guard = Some(self.settings.connect().await.map_err(|e| e.to_string())?);
            }
            let client = guard.as_ref().expect("connected above");
            let mut problems = Vec::new();
            keel_ha::inspect::contenders(client, &mut problems).await.map_err(|e| e.to_string())
        })
        .await;
        match attempt {
            Ok(Ok(list)) => Ok(list),
            Ok(Err(e)) => {
                *guard = None;
                Err(e)
            }
            Err(_) => {
                *guard = None;
                Err(format!(
                    "reading the contenders from ZooKeeper ({}) took more than {READ_BOUND:?}",
                    self.settings.quorum
                ))
            }
        }
    }
}
