//! What a run shows: a terminal summary, `report.json`, and a self-contained `report.html`.
//!
//! [`Report::new`] gathers a run's seed and duration, the checker's verdicts, the per-fault
//! timings ([`failover_times`]) and the history's lanes (faults, leadership intervals, job
//! timelines). Then:
//!
//! - [`summary_table`](Report::summary_table): each verdict PASS/FAIL with its first
//!   detail, and per fault the time to a new leader and to the jobs running again;
//! - [`to_json`](Report::to_json) / [`from_json`](Report::from_json): everything, losslessly
//!   (durations at millisecond precision);
//! - [`to_html`](Report::to_html): one HTML page with inline CSS and an inline SVG timeline
//!   (x = time; a lane of fault bars, one lane per dispatcher with its leadership intervals
//!   labelled by epoch, one lane per job with state bands, checkpoint ticks and restore
//!   marks). No scripts, no external assets: hover titles are SVG `<title>` elements.
//! - [`write`](Report::write) puts `report.json` and `report.html` in a directory.

use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::checker::{failover_times, FailoverTiming, Verdict};
use crate::history::{FaultWindow, History, JobTimeline, LeadershipInterval};

/// A verdict as the report keeps it (owned, so a report can be read back from JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerdictRow {
    pub name: String,
    pub ok: bool,
    pub details: Vec<String>,
}

impl From<&Verdict> for VerdictRow {
    fn from(v: &Verdict) -> Self {
        VerdictRow { name: v.name.to_string(), ok: v.ok, details: v.details.clone() }
    }
}

/// Everything a run shows (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// The seed the schedule was derived from.
    pub seed: u64,
    /// How long the run took (milliseconds in JSON).
    #[serde(rename = "duration_ms", with = "duration_ms")]
    pub duration: Duration,
    pub verdicts: Vec<VerdictRow>,
    pub timings: Vec<FailoverTiming>,
    pub faults: Vec<FaultWindow>,
    pub dispatchers: Vec<String>,
    pub leadership: Vec<LeadershipInterval>,
    pub jobs: Vec<JobTimeline>,
    /// First and last `ts_ms` of the history (and of the faults).
    pub start_ms: Option<i64>,
    pub end_ms: Option<i64>,
    /// Events in the history.
    pub events: usize,
    /// Malformed history lines: count, and the first descriptions.
    pub malformed: usize,
    pub malformed_lines: Vec<String>,
    /// Free-form lines (nemeses used, command line, ...).
    pub notes: Vec<String>,
    /// Why the run is INCONCLUSIVE (too little happened to judge it, or a verdict had nothing
    /// to judge); empty for a run that exercised what it claims. Such a run is never a PASS.
    #[serde(default)]
    pub inconclusive: Vec<String>,
}

mod duration_ms {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

impl Report {
    /// Builds the report of a run from its history and the verdicts the caller computed.
    pub fn new(seed: u64, duration: Duration, history: &History, verdicts: &[Verdict]) -> Report {
        let faults = history.fault_windows();
        let span = history.span();
        let fault_end = faults.iter().filter_map(|f| f.end_ms.or(Some(f.start_ms))).max();
        Report {
            seed,
            duration,
            verdicts: verdicts.iter().map(VerdictRow::from).collect(),
            timings: failover_times(history),
            dispatchers: history.dispatchers(),
            leadership: history.leadership_intervals(),
            jobs: history.job_timelines(),
            start_ms: span.map(|s| s.0),
            end_ms: match (span.map(|s| s.1), fault_end) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            },
            faults,
            events: history.len(),
            malformed: history.malformed,
            malformed_lines: history.malformed_lines.clone(),
            notes: Vec::new(),
            inconclusive: Vec::new(),
        }
    }

    /// Marks the run INCONCLUSIVE for `why` (see [`Report::inconclusive`]).
    pub fn with_inconclusive(mut self, why: impl Into<String>) -> Report {
        self.inconclusive.push(why.into());
        self
    }

    /// `PASS`, `FAIL (n of m verdicts failed)` or `INCONCLUSIVE (why; ...)`: a failed verdict
    /// wins over too little activity.
    pub fn result(&self) -> String {
        let failed = self.failed().len();
        if failed > 0 {
            format!("FAIL ({failed} of {} verdicts failed)", self.verdicts.len())
        } else if !self.inconclusive.is_empty() {
            format!("INCONCLUSIVE ({})", self.inconclusive.join("; "))
        } else {
            "PASS".to_string()
        }
    }

    /// Adds a free-form note line.
    pub fn with_note(mut self, note: impl Into<String>) -> Report {
        self.notes.push(note.into());
        self
    }

    /// True if every verdict passed and the run was not INCONCLUSIVE.
    pub fn ok(&self) -> bool {
        self.verdicts.iter().all(|v| v.ok) && self.inconclusive.is_empty()
    }

    /// The verdicts that failed.
    pub fn failed(&self) -> Vec<&VerdictRow> {
        self.verdicts.iter().filter(|v| !v.ok).collect()
    }

    fn rel(&self, t: i64) -> String {
        secs(t - self.start_ms.unwrap_or(t))
    }

    /// A plain-text summary for the terminal: header, verdict table, timing table.
    pub fn summary_table(&self) -> String {
        let mut out = String::new();
        let result = self.result();
        let _ = writeln!(
            out,
            "chaos run  seed={}  duration={}  events={}  malformed={}  faults={}  result={result}",
            self.seed,
            secs(self.duration.as_millis() as i64),
            self.events,
            self.malformed,
            self.faults.len()
        );
        for n in &self.notes {
            let _ = writeln!(out, "  {n}");
        }
        out.push('\n');
        let rows: Vec<Vec<String>> = self
            .verdicts
            .iter()
            .map(|v| {
                let mut first = v.details.first().map(|d| shorten(d, 140)).unwrap_or_default();
                if v.details.len() > 1 {
                    let _ = write!(first, "  (+{} more)", v.details.len() - 1);
                }
                vec![v.name.clone(), if v.ok { "PASS" } else { "FAIL" }.to_string(), first]
            })
            .collect();
        out.push_str(&table(&["verdict", "result", "first detail"], &rows));
        if !self.timings.is_empty() {
            out.push('\n');
            let rows: Vec<Vec<String>> = self
                .timings
                .iter()
                .map(|t| {
                    let epochs = match (t.old_epoch, t.new_epoch) {
                        (Some(o), Some(n)) => format!("{o} → {n}"),
                        (None, Some(n)) => format!("– → {n}"),
                        (Some(o), None) => format!("{o}"),
                        (None, None) => "–".into(),
                    };
                    let mut running = match (t.time_to_running_again_ms(), t.jobs_interrupted.len()) {
                        (Some(ms), _) => secs(ms),
                        (None, 0) => "not interrupted".into(),
                        (None, _) => "never".into(),
                    };
                    if !t.jobs_adopted.is_empty() {
                        running.push_str(&format!(" ({} adopted)", t.jobs_adopted.len()));
                    }
                    if let Some(g) = t.processing_gap_ms {
                        running.push_str(&format!(", gap {g} ms"));
                    }
                    vec![
                        t.fault.clone(),
                        t.target.clone(),
                        self.rel(t.fault_at),
                        t.healed_at.map_or("never".into(), |h| secs(h - t.fault_at)),
                        t.time_to_new_leader_ms().map_or("–".into(), secs),
                        epochs,
                        running,
                    ]
                })
                .collect();
            out.push_str(&table(
                &["fault", "target", "at", "healed after", "new leader after", "epoch", "jobs running again after"],
                &rows,
            ));
        }
        if self.malformed > 0 {
            let first: Vec<&str> = self.malformed_lines.iter().take(3).map(String::as_str).collect();
            let _ = writeln!(out, "\n{} malformed history lines, first: {}", self.malformed, first.join("; "));
        }
        out
    }

    /// The whole report as JSON (what `report.json` holds).
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or_else(|e| serde_json::json!({"error": e.to_string()}))
    }

    /// Reads a report back from [`to_json`](Self::to_json)'s output.
    ///
    /// # Errors
    ///
    /// The value does not have the report's shape.
    pub fn from_json(value: &Value) -> Result<Report, String> {
        Report::deserialize(value).map_err(|e| format!("not a chaos report: {e}"))
    }

    /// Writes `report.json` and `report.html` into `dir` (created if needed); returns both
    /// paths.
    ///
    /// # Errors
    ///
    /// Creating the directory or writing a file failed.
    pub fn write(&self, dir: &Path) -> io::Result<(PathBuf, PathBuf)> {
        std::fs::create_dir_all(dir)?;
        let json = dir.join("report.json");
        let html = dir.join("report.html");
        let text = serde_json::to_string_pretty(&self.to_json()).map_err(io::Error::other)?;
        std::fs::write(&json, text)?;
        std::fs::write(&html, self.to_html())?;
        Ok((json, html))
    }

    /// A self-contained HTML page: verdicts, timings and the SVG timeline.
    pub fn to_html(&self) -> String {
        let mut h = String::new();
        let status = if self.ok() {
            "PASS"
        } else if self.failed().is_empty() {
            "INCONCLUSIVE"
        } else {
            "FAIL"
        };
        let _ = write!(
            h,
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
             <title>Keel chaos run seed {seed}: {status}</title>\n<style>{CSS}</style></head><body>\n\
             <h1>Keel chaos run <span class=\"{cls}\">{status}</span></h1>\n\
             <p>seed <b>{seed}</b> · duration <b>{dur}</b> · {events} events · {malformed} malformed lines · {faults} faults</p>\n",
            seed = self.seed,
            cls = status.to_ascii_lowercase(),
            dur = secs(self.duration.as_millis() as i64),
            events = self.events,
            malformed = self.malformed,
            faults = self.faults.len(),
        );
        for n in &self.notes {
            let _ = writeln!(h, "<p class=\"note\">{}</p>", esc(n));
        }
        h.push_str(
            "<h2>Verdicts</h2>\n<table class=\"verdicts\"><tr><th>verdict</th><th>result</th><th>details</th></tr>\n",
        );
        for v in &self.verdicts {
            let res = if v.ok { "PASS" } else { "FAIL" };
            let details = match v.details.as_slice() {
                [] => String::new(),
                [one] => esc(one),
                [first, rest @ ..] => {
                    let items: String = rest.iter().map(|d| format!("<li>{}</li>", esc(d))).collect();
                    format!(
                        "<details><summary>{} <i>(+{} more)</i></summary><ul>{items}</ul></details>",
                        esc(first),
                        rest.len()
                    )
                }
            };
            let _ = writeln!(
                h,
                "<tr><td><code>{}</code></td><td class=\"{}\">{res}</td><td>{details}</td></tr>",
                esc(&v.name),
                res.to_ascii_lowercase()
            );
        }
        h.push_str("</table>\n");
        if !self.timings.is_empty() {
            h.push_str(
                "<h2>Faults and failover times</h2>\n<table class=\"timings\"><tr><th>#</th><th>fault</th><th>target</th>\
                 <th>at</th><th>healed after</th><th>new leader after</th><th>epoch</th><th>new leader</th>\
                 <th>workers registered after</th><th>jobs running again after</th></tr>\n",
            );
            for t in &self.timings {
                let _ = writeln!(
                    h,
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{} → {}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    t.fault_id.map_or("–".into(), |i| i.to_string()),
                    esc(&t.fault),
                    esc(&t.target),
                    self.rel(t.fault_at),
                    t.healed_at.map_or("never".into(), |x| secs(x - t.fault_at)),
                    t.time_to_new_leader_ms().map_or("–".into(), secs),
                    t.old_epoch.map_or("–".into(), |e| e.to_string()),
                    t.new_epoch.map_or("–".into(), |e| e.to_string()),
                    esc(t.new_leader.as_deref().unwrap_or("–")),
                    t.workers_registered_at.map_or("–".into(), |x| secs(x - t.fault_at)),
                    match (t.time_to_running_again_ms(), t.jobs_interrupted.len()) {
                        (Some(ms), n) => format!("{} ({n} jobs)", secs(ms)),
                        (None, 0) => "not interrupted".into(),
                        (None, n) => format!("never ({n} jobs interrupted)"),
                    } + &if t.jobs_adopted.is_empty() { String::new() } else { format!(" ({} adopted)", t.jobs_adopted.len()) }
                      + &t.processing_gap_ms.map_or(String::new(), |g| format!(", gap {g} ms"))
                );
            }
            h.push_str("</table>\n");
        }
        h.push_str("<h2>Timeline</h2>\n");
        h.push_str(&self.timeline_svg());
        h.push_str(LEGEND);
        if self.malformed > 0 {
            let _ = write!(h, "<h2>Malformed history lines ({})</h2>\n<ul>", self.malformed);
            for l in &self.malformed_lines {
                let _ = write!(h, "<li><code>{}</code></li>", esc(l));
            }
            h.push_str("</ul>\n");
        }
        h.push_str("</body></html>\n");
        h
    }

    /// The timeline as one `<svg>` element.
    pub fn timeline_svg(&self) -> String {
        const WIDTH: f64 = 1200.0;
        const LEFT: f64 = 140.0;
        const RIGHT: f64 = 40.0;
        const LANE: f64 = 26.0;
        const GAP: f64 = 8.0;
        const TOP: f64 = 28.0;
        let t0 = self.start_ms.unwrap_or(0);
        let t1 = self.end_ms.unwrap_or(t0).max(t0 + 1);
        let x = |t: i64| LEFT + (t - t0) as f64 / (t1 - t0) as f64 * (WIDTH - LEFT - RIGHT);
        let xe = |t: Option<i64>| x(t.unwrap_or(t1).min(t1));

        // Fault bars packed into rows so overlapping faults (and their labels, drawn after a
        // bar too short to hold them) stay readable.
        let mut fault_rows: Vec<f64> = Vec::new(); // right edge (px) of the last bar per row
        let mut fault_row_of = Vec::new();
        for f in &self.faults {
            let (xa, xb) = (x(f.start_ms), xe(f.end_ms).max(x(f.start_ms) + 2.0));
            let label = text_width(&format!("{} {}", f.fault, f.target));
            let right = if xb - xa >= label + 6.0 { xb } else { xb + 3.0 + label };
            let row = fault_rows.iter().position(|&e| e + 4.0 < xa).unwrap_or_else(|| {
                fault_rows.push(f64::MIN);
                fault_rows.len() - 1
            });
            fault_rows[row] = right;
            fault_row_of.push(row);
        }
        let fault_lane_h = LANE * fault_rows.len().max(1) as f64;
        let lanes = 1 + self.dispatchers.len() + self.jobs.len();
        let height = TOP + fault_lane_h + (lanes - 1) as f64 * LANE + lanes as f64 * GAP + 10.0;

        let mut s = String::new();
        let _ = writeln!(
            s,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"timeline\" width=\"{WIDTH}\" height=\"{height:.0}\" \
             viewBox=\"0 0 {WIDTH} {height:.0}\" font-family=\"sans-serif\" font-size=\"11\">"
        );
        // Time axis.
        let step = tick_step(t1 - t0);
        let mut t = 0;
        while t <= t1 - t0 {
            let xt = x(t0 + t);
            let _ = writeln!(
                s,
                "<line x1=\"{xt:.1}\" y1=\"{TOP:.0}\" x2=\"{xt:.1}\" y2=\"{:.0}\" class=\"grid\"/>\
                 <text x=\"{xt:.1}\" y=\"{:.0}\" text-anchor=\"middle\" class=\"axis\">{}</text>",
                height - 6.0,
                TOP - 10.0,
                axis_label(t, step)
            );
            t += step;
        }
        // Fault start markers across all lanes.
        for f in &self.faults {
            let xf = x(f.start_ms);
            let _ = writeln!(
                s,
                "<line x1=\"{xf:.1}\" y1=\"{TOP:.0}\" x2=\"{xf:.1}\" y2=\"{:.0}\" class=\"fault-mark\"/>",
                height - 6.0
            );
        }

        let mut y = TOP;
        // Faults lane.
        let _ = writeln!(s, "<g class=\"lane\" data-kind=\"faults\" data-name=\"faults\">");
        lane_label(&mut s, y, fault_lane_h, "faults");
        for (f, row) in self.faults.iter().zip(&fault_row_of) {
            let (xa, xb) = (x(f.start_ms), xe(f.end_ms).max(x(f.start_ms) + 2.0));
            let yy = y + *row as f64 * LANE + 3.0;
            let healed = f.end_ms.map_or("never healed".to_string(), |e| format!("healed at {}", self.rel(e)));
            let label = format!("{} {}", f.fault, f.target);
            let mut text = fit_text(xa, xb, yy + (LANE - 6.0) / 2.0, &label);
            if text.is_empty() {
                text = format!(
                    "<text x=\"{:.1}\" y=\"{:.1}\" class=\"side-text\">{}</text>",
                    xb + 3.0,
                    yy + (LANE - 6.0) / 2.0 + 4.0,
                    esc(&label)
                );
            }
            let _ = writeln!(
                s,
                "<g><title>{} on {} (id {}): from {}, {healed}</title><rect x=\"{xa:.1}\" y=\"{yy:.1}\" width=\"{:.1}\" height=\"{:.0}\" class=\"fault{}\"/>{text}</g>",
                esc(&f.fault),
                esc(&f.target),
                f.id.map_or("–".into(), |i| i.to_string()),
                self.rel(f.start_ms),
                xb - xa,
                LANE - 6.0,
                if f.end_ms.is_none() { " open" } else { "" },
            );
        }
        s.push_str("</g>\n");
        y += fault_lane_h + GAP;

        // One lane per dispatcher.
        for d in &self.dispatchers {
            let _ = writeln!(s, "<g class=\"lane\" data-kind=\"dispatcher\" data-name=\"{}\">", esc(d));
            lane_label(&mut s, y, LANE, d);
            for iv in self.leadership.iter().filter(|iv| &iv.process == d) {
                let acting_end = match (iv.end_ms, iv.superseded_ms) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                let (xa, xb) = (x(iv.start_ms), xe(acting_end).max(x(iv.start_ms) + 2.0));
                let label = format!("epoch {}", iv.epoch);
                let _ = writeln!(
                    s,
                    "<g><title>{} leads with epoch {} from {} to {}</title><rect x=\"{xa:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.0}\" class=\"leader\" fill=\"{}\"/>{}</g>",
                    esc(d),
                    iv.epoch,
                    self.rel(iv.start_ms),
                    acting_end.map_or("the end".into(), |e| self.rel(e)),
                    y + 3.0,
                    xb - xa,
                    LANE - 6.0,
                    epoch_color(iv.epoch),
                    fit_text(xa, xb, y + LANE / 2.0, &label)
                );
                if let Some(sup) = iv.superseded_ms {
                    if iv.end_ms.is_none_or(|e| e > sup) {
                        let (za, zb) = (x(sup), xe(iv.end_ms));
                        let _ = writeln!(
                            s,
                            "<g><title>{} still believed it led epoch {} after a higher epoch was gained at {} ({})</title>\
                             <rect x=\"{za:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.0}\" class=\"zombie\"/></g>",
                            esc(d),
                            iv.epoch,
                            self.rel(sup),
                            iv.end_ms.map_or("no leadership_lost logged".into(), |e| format!("until {}", self.rel(e))),
                            y + 3.0,
                            (zb - za).max(1.0),
                            LANE - 6.0
                        );
                    }
                }
            }
            s.push_str("</g>\n");
            y += LANE + GAP;
        }

        // One lane per job.
        for j in &self.jobs {
            let _ = writeln!(s, "<g class=\"lane\" data-kind=\"job\" data-name=\"{}\">", esc(&j.job));
            lane_label(&mut s, y, LANE, &format!("job {}", j.job));
            for (i, st) in j.states.iter().enumerate() {
                // A change to the state it already had extends the band drawn before.
                if i > 0 && j.states[i - 1].to == st.to {
                    continue;
                }
                let next = j.states[i + 1..].iter().find(|n| n.to != st.to).map(|n| n.ts_ms);
                let (xa, xb) = (x(st.ts_ms), xe(next).max(x(st.ts_ms) + 1.0));
                let _ = writeln!(
                    s,
                    "<g><title>{} {} from {} ({} → {}, by {})</title><rect x=\"{xa:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.0}\" class=\"state state-{}\"/>{}</g>",
                    esc(&j.job),
                    esc(&st.to),
                    self.rel(st.ts_ms),
                    esc(&st.from),
                    esc(&st.to),
                    esc(&st.process),
                    y + 3.0,
                    xb - xa,
                    LANE - 6.0,
                    css_ident(&st.to),
                    fit_text(xa, xb, y + LANE / 2.0, &st.to)
                );
            }
            let mut last_tick = f64::MIN;
            for c in &j.checkpoints {
                let xc = x(c.ts_ms);
                // Ticks closer than 2 px would be one black smear (long runs): draw the first.
                if xc - last_tick < 2.0 {
                    continue;
                }
                last_tick = xc;
                let _ = writeln!(
                    s,
                    "<g><title>checkpoint {} completed at {} (epoch {}, by {})</title><line x1=\"{xc:.1}\" y1=\"{:.1}\" x2=\"{xc:.1}\" y2=\"{:.1}\" class=\"checkpoint\"/></g>",
                    c.checkpoint,
                    self.rel(c.ts_ms),
                    c.epoch,
                    esc(&c.process),
                    y + LANE - 10.0,
                    y + LANE - 2.0
                );
            }
            for r in &j.restores {
                let xr = x(r.ts_ms);
                let _ = writeln!(
                    s,
                    "<g><title>restored from {} at {} by {}</title><path d=\"M{:.1},{:.1} l5,0 l-5,7 l-5,-7 z\" class=\"restore\"/></g>",
                    r.checkpoint.map_or("no checkpoint".into(), |c| format!("checkpoint {c}")),
                    self.rel(r.ts_ms),
                    esc(&r.process),
                    xr,
                    y + 1.0
                );
            }
            s.push_str("</g>\n");
            y += LANE + GAP;
        }
        s.push_str("</svg>\n");
        s
    }
}

const CSS: &str = "body{font-family:sans-serif;margin:1.5em;color:#222}\
table{border-collapse:collapse;margin-bottom:1em}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left;vertical-align:top;font-size:13px}\
.pass{color:#1a7f37;font-weight:bold}.fail{color:#c62828;font-weight:bold}.note{color:#555}\
svg.timeline{border:1px solid #ddd;background:#fff}\
.grid{stroke:#eee}.axis{fill:#777}.lane-label{fill:#333;font-weight:bold}\
.fault{fill:#e53935;fill-opacity:.75}.fault.open{fill:#b71c1c;stroke:#000;stroke-dasharray:3,2}\
.fault-mark{stroke:#e53935;stroke-opacity:.35;stroke-dasharray:2,3}\
.leader{fill-opacity:.85}.zombie{fill:#9e9e9e;fill-opacity:.35;stroke:#616161;stroke-dasharray:3,2}\
.bar-text{fill:#fff;font-size:10px}.side-text{fill:#b71c1c;font-size:10px}\
.state{fill:#90a4ae}.state-RUNNING{fill:#43a047}.state-RESTARTING{fill:#fb8c00}.state-SCHEDULING,.state-CREATED{fill:#64b5f6}\
.state-FINISHED{fill:#1e3a8a}.state-CANCELED,.state-CANCELLED{fill:#757575}.state-FAILED{fill:#c62828}\
.checkpoint{stroke:#000;stroke-width:1.5}.restore{fill:#6a1b9a}\
.legend span{display:inline-block;margin-right:1em;font-size:12px}.legend i{display:inline-block;width:12px;height:12px;margin-right:4px;vertical-align:middle}";

const LEGEND: &str = "<p class=\"legend\">\
<span><i style=\"background:#e53935\"></i>fault</span>\
<span><i style=\"background:#5c6bc0\"></i>leadership (colour per epoch)</span>\
<span><i style=\"background:#bdbdbd\"></i>superseded leader (fenced zombie)</span>\
<span><i style=\"background:#43a047\"></i>RUNNING</span>\
<span><i style=\"background:#fb8c00\"></i>RESTARTING</span>\
<span><i style=\"background:#64b5f6\"></i>CREATED / SCHEDULING</span>\
<span><i style=\"background:#1e3a8a\"></i>FINISHED</span>\
<span><i style=\"background:#757575\"></i>CANCELED</span>\
<span><i style=\"background:#c62828\"></i>FAILED</span>\
<span>| checkpoint completed</span><span>▼ restore</span></p>\n";

fn lane_label(s: &mut String, y: f64, h: f64, name: &str) {
    let _ = writeln!(s, "<text x=\"6\" y=\"{:.1}\" class=\"lane-label\">{}</text>", y + h / 2.0 + 4.0, esc(name));
}

/// Approximate width of `text` at the bars' 10 px font.
fn text_width(text: &str) -> f64 {
    text.chars().count() as f64 * 6.0
}

/// A label inside a bar (vertical centre `y`) if it fits, else nothing.
fn fit_text(xa: f64, xb: f64, y: f64, text: &str) -> String {
    if (xb - xa) < text_width(text) + 6.0 {
        return String::new();
    }
    format!("<text x=\"{:.1}\" y=\"{:.1}\" class=\"bar-text\">{}</text>", xa + 3.0, y + 3.5, esc(text))
}

/// Axis tick label: whole seconds when the step allows (`15s`, `2m30s`), else `secs`.
fn axis_label(ms: i64, step: i64) -> String {
    if step % 1000 != 0 {
        return secs(ms);
    }
    let s = ms / 1000;
    if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

/// A stable, distinct-ish colour per epoch.
fn epoch_color(epoch: u64) -> String {
    let hue = (epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) % 360;
    format!("hsl({hue},55%,45%)")
}

fn css_ident(s: &str) -> String {
    s.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_').collect()
}

/// A tick step (ms) giving about 10 ticks: 1, 2 or 5 × 10^k.
fn tick_step(span_ms: i64) -> i64 {
    let raw = (span_ms / 10).max(1);
    let mut p = 1i64;
    loop {
        for m in [1, 2, 5] {
            if m * p >= raw {
                return m * p;
            }
        }
        p = p.saturating_mul(10);
    }
}

/// `12.345s`, `2m03.5s`, `-0.2s`.
fn secs(ms: i64) -> String {
    let neg = if ms < 0 { "-" } else { "" };
    let ms = ms.unsigned_abs();
    if ms >= 60_000 {
        format!("{neg}{}m{:04.1}s", ms / 60_000, (ms % 60_000) as f64 / 1000.0)
    } else {
        format!("{neg}{:.3}s", ms as f64 / 1000.0)
    }
}

fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let head: String = s.chars().take(max).collect();
        format!("{head}…")
    }
}

/// A plain-text table with a header row and a dashed rule.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| -> String {
        let n = cells.len();
        let mut l = String::new();
        for (i, c) in cells.into_iter().enumerate() {
            l.push_str(c);
            if i + 1 < n {
                l.push_str(&" ".repeat(widths[i] - c.chars().count() + 2));
            }
        }
        l.trim_end().to_string() + "\n"
    };
    let mut out = line(header.to_vec());
    out.push_str(&line(widths.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>().iter().map(String::as_str).collect()));
    for r in rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    out
}

/// Escapes text for HTML and SVG (element content and attribute values).
fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helpers() {
        assert_eq!(secs(12_345), "12.345s");
        assert_eq!(secs(123_500), "2m03.5s");
        assert_eq!(secs(-200), "-0.200s");
        assert_eq!(tick_step(120_000), 20_000);
        assert_eq!(tick_step(3), 1);
        assert_eq!(tick_step(7_000), 1_000);
        assert_eq!(esc("<a href='x'>&\"</a>"), "&lt;a href=&#39;x&#39;&gt;&amp;&quot;&lt;/a&gt;");
        let t = table(&["a", "bb"], &[vec!["xxx".into(), "y".into()]]);
        assert_eq!(t, "a    bb\n---  --\nxxx  y\n");
        assert_eq!(shorten("abcdef", 3), "abc…");
    }
}
