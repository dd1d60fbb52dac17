//! The dashboard's islands: the parts of a page that run in the browser.
//!
//! Pages are rendered on the server (the `web` crate); each island renders
//! its HTML there too, with its props serialized into the page, and the
//! browser hydrates it from the wasm bundle (`--features hydrate`), so it
//! reacts to clicks without a second round trip. Everything still reads
//! (and every link works) before the wasm has loaded.
//!
//! - [`AutoRefresh`]: a countdown that reloads the page, with pause/resume.
//! - [`SortableTable`]: a table whose column headers sort it.
//! - [`IncidentAction`]: acknowledges or resolves an incident through the JSON API.

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

/// The wasm entry point: called by the page's loader before islands hydrate.
#[cfg(feature = "hydrate")]
#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    leptos::mount::hydrate_islands();
}

/// Reloads the page and sets the countdown from `seconds`; pausing stops it.
#[island]
pub fn AutoRefresh(
    /// Seconds between reloads.
    seconds: u64,
) -> impl IntoView {
    let (left, set_left) = signal(seconds);
    let (paused, set_paused) = signal(false);
    Effect::new(move |_| {
        // Runs in the browser only: effects do not run on the server.
        let handle = set_interval_with_handle(
            move || {
                if paused.get_untracked() {
                    return;
                }
                let l = left.get_untracked();
                if l <= 1 {
                    set_left.set(0);
                    let _ = window().location().reload();
                } else {
                    set_left.set(l - 1);
                }
            },
            std::time::Duration::from_secs(1),
        );
        on_cleanup(move || {
            if let Ok(h) = handle {
                h.clear();
            }
        });
    });
    view! {
        <span class="auto-refresh">
            <span class="countdown">
                {move || {
                    if paused.get() {
                        "auto-refresh paused".to_string()
                    } else {
                        format!("refresh in {} s", left.get())
                    }
                }}
            </span>
            " "
            <button type="button" class="pause" on:click=move |_| set_paused.update(|p| *p = !*p)>
                {move || if paused.get() { "resume" } else { "pause" }}
            </button>
        </span>
    }
}

/// How a cell sorts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum SortKey {
    /// Numerically (missing values last).
    Num(Option<f64>),
    /// Alphabetically.
    Text(String),
}

/// One table cell.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cell {
    /// What is shown.
    pub text: String,
    /// How it sorts.
    pub key: SortKey,
    /// A link, if the cell is one.
    pub href: Option<String>,
    /// CSS classes.
    pub class: String,
    /// Markup drawn by the server instead of the text (a sparkline's SVG).
    pub svg: Option<String>,
}

impl Cell {
    /// A text cell.
    pub fn text(t: impl Into<String>) -> Cell {
        let text = t.into();
        Cell {
            key: SortKey::Text(text.to_lowercase()),
            text,
            href: None,
            class: String::new(),
            svg: None,
        }
    }

    /// A number cell, right-aligned, sorting by `value`.
    pub fn num(text: impl Into<String>, value: Option<f64>) -> Cell {
        Cell {
            text: text.into(),
            key: SortKey::Num(value.filter(|v| v.is_finite())),
            href: None,
            class: "num".into(),
            svg: None,
        }
    }

    /// A cell showing server-drawn SVG, sorting by `value`.
    pub fn svg(svg: String, value: Option<f64>) -> Cell {
        Cell {
            text: String::new(),
            key: SortKey::Num(value.filter(|v| v.is_finite())),
            href: None,
            class: String::new(),
            svg: Some(svg),
        }
    }

    /// Makes the cell a link.
    pub fn link(mut self, href: impl Into<String>) -> Cell {
        self.href = Some(href.into());
        self
    }

    /// Adds CSS classes.
    pub fn class(mut self, class: &str) -> Cell {
        if !self.class.is_empty() {
            self.class.push(' ');
        }
        self.class.push_str(class);
        self
    }
}

fn compare(a: &SortKey, b: &SortKey) -> std::cmp::Ordering {
    use std::cmp::Ordering::*;
    match (a, b) {
        (SortKey::Num(Some(x)), SortKey::Num(Some(y))) => x.total_cmp(y),
        (SortKey::Num(None), SortKey::Num(Some(_))) => Greater,
        (SortKey::Num(Some(_)), SortKey::Num(None)) => Less,
        (SortKey::Num(None), SortKey::Num(None)) => Equal,
        (SortKey::Text(x), SortKey::Text(y)) => x.cmp(y),
        (SortKey::Num(_), SortKey::Text(_)) => Less,
        (SortKey::Text(_), SortKey::Num(_)) => Greater,
    }
}

/// `rows` ordered by column `col` (stable; descending if `desc`).
pub fn sorted(mut rows: Vec<Vec<Cell>>, col: usize, desc: bool) -> Vec<Vec<Cell>> {
    rows.sort_by(|a, b| {
        let o = match (a.get(col), b.get(col)) {
            (Some(x), Some(y)) => compare(&x.key, &y.key),
            _ => std::cmp::Ordering::Equal,
        };
        if desc { o.reverse() } else { o }
    });
    rows
}

/// A table sorted by clicking a column header (again: the other way).
#[island]
pub fn SortableTable(
    /// Element id (for tests and deep links).
    id: String,
    /// Column headers.
    headers: Vec<String>,
    /// Rows of cells, in their initial order.
    rows: Vec<Vec<Cell>>,
) -> impl IntoView {
    let (sort, set_sort) = signal::<Option<(usize, bool)>>(None);
    let rows = StoredValue::new(rows);
    let body = move || {
        let r = rows.get_value();
        let r = match sort.get() {
            Some((c, desc)) => sorted(r, c, desc),
            None => r,
        };
        r.into_iter()
            .map(|row| {
                view! {
                    <tr>
                        {row
                            .into_iter()
                            .map(|c| {
                                if let Some(svg) = c.svg {
                                    return view! { <td class=c.class inner_html=svg></td> }.into_any();
                                }
                                let inner = match c.href {
                                    Some(h) => view! { <a href=h>{c.text}</a> }.into_any(),
                                    None => c.text.into_any(),
                                };
                                view! { <td class=c.class>{inner}</td> }.into_any()
                            })
                            .collect_view()}
                    </tr>
                }
            })
            .collect_view()
    };
    view! {
        <table id=id class="sortable">
            <thead>
                <tr>
                    {headers
                        .into_iter()
                        .enumerate()
                        .map(|(i, h)| {
                            let mark = move || match sort.get() {
                                Some((c, desc)) if c == i => if desc { " ▼" } else { " ▲" },
                                _ => "",
                            };
                            view! {
                                <th
                                    title="sort"
                                    on:click=move |_| {
                                        set_sort
                                            .update(|s| {
                                                *s = match *s {
                                                    Some((c, false)) if c == i => Some((i, true)),
                                                    _ => Some((i, false)),
                                                };
                                            })
                                    }
                                >
                                    {h}
                                    {mark}
                                </th>
                            }
                        })
                        .collect_view()}
                </tr>
            </thead>
            <tbody>{body}</tbody>
        </table>
    }
}

/// Acknowledges (`action` = `ack`) or resolves (`resolve`) incident `id`
/// as the name typed in (kept in the browser for next time), with an
/// optional note for a resolve, through the JSON API; then reloads the
/// page to show the new state.
#[island]
pub fn IncidentAction(
    /// The incident.
    id: i64,
    /// `ack` or `resolve`.
    action: String,
) -> impl IntoView {
    let (who, set_who) = signal(String::new());
    let (note, set_note) = signal(String::new());
    let (message, set_message) = signal(String::new());
    Effect::new(move |_| {
        if let Some(name) = stored_name() {
            set_who.set(name);
        }
    });
    let resolving = action == "resolve";
    let (label, doing) = if resolving {
        ("Resolve", "resolving…")
    } else {
        ("Acknowledge", "acknowledging…")
    };
    let path = StoredValue::new(format!("/api/v1/incidents/{id}/{action}"));
    let run = move |_| {
        let by = who.get_untracked().trim().to_string();
        if by.is_empty() {
            set_message.set("type your name first".into());
            return;
        }
        set_message.set(doing.into());
        let mut body = serde_json::json!({ "by": by });
        let n = note.get_untracked().trim().to_string();
        if resolving && !n.is_empty() {
            body["note"] = serde_json::Value::String(n);
        }
        let url = path.get_value();
        #[cfg(not(feature = "hydrate"))]
        let _ = (url, body);
        #[cfg(feature = "hydrate")]
        wasm_bindgen_futures::spawn_local(async move {
            remember_name(&by);
            match browser::post_json(&url, &body.to_string()).await {
                Ok(status) if (200..300).contains(&status) => {
                    let _ = window().location().reload();
                }
                Ok(status) => set_message.set(format!("failed: HTTP {status}")),
                Err(e) => set_message.set(format!("failed: {e}")),
            }
        });
    };
    view! {
        <span class=format!("incident-action {action}")>
            <input
                type="text"
                class=format!("{action}-name")
                placeholder="your name"
                prop:value=who
                on:input=move |ev| set_who.set(event_target_value(&ev))
            />
            {resolving.then(|| view! {
                " "
                <input
                    type="text"
                    class="resolve-note"
                    placeholder="note (optional)"
                    prop:value=note
                    on:input=move |ev| set_note.set(event_target_value(&ev))
                />
            })}
            " "
            <button type="button" class=format!("{action}-button") on:click=run>
                {label}
            </button>
            <span class=format!("{action}-message muted")>{message}</span>
        </span>
    }
}

const NAME_KEY: &str = "burnwatch.name";

#[cfg(feature = "hydrate")]
fn stored_name() -> Option<String> {
    window()
        .local_storage()
        .ok()
        .flatten()
        .and_then(|s| s.get_item(NAME_KEY).ok().flatten())
}

#[cfg(not(feature = "hydrate"))]
fn stored_name() -> Option<String> {
    let _ = NAME_KEY;
    None
}

#[cfg(feature = "hydrate")]
fn remember_name(name: &str) {
    if let Some(s) = window().local_storage().ok().flatten() {
        let _ = s.set_item(NAME_KEY, name);
    }
}

#[cfg(feature = "hydrate")]
mod browser {
    use wasm_bindgen::{JsCast, JsValue};
    use wasm_bindgen_futures::JsFuture;

    fn text(e: JsValue) -> String {
        e.as_string().unwrap_or_else(|| format!("{e:?}"))
    }

    /// POSTs JSON to `url` (same origin) and returns the HTTP status.
    pub async fn post_json(url: &str, body: &str) -> Result<u16, String> {
        let init = web_sys::RequestInit::new();
        init.set_method("POST");
        init.set_body(&JsValue::from_str(body));
        let req = web_sys::Request::new_with_str_and_init(url, &init).map_err(text)?;
        req.headers()
            .set("content-type", "application/json")
            .map_err(text)?;
        let resp = JsFuture::from(leptos::prelude::window().fetch_with_request(&req))
            .await
            .map_err(text)?;
        let resp: web_sys::Response = resp.dyn_into().map_err(text)?;
        Ok(resp.status())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorting_numbers_puts_missing_values_last_and_toggles() {
        let rows = vec![
            vec![Cell::text("b"), Cell::num("2", Some(2.0))],
            vec![Cell::text("a"), Cell::num("–", None)],
            vec![Cell::text("c"), Cell::num("10", Some(10.0))],
        ];
        let by_num = sorted(rows.clone(), 1, false);
        let names: Vec<&str> = by_num.iter().map(|r| r[0].text.as_str()).collect();
        assert_eq!(names, ["b", "c", "a"]);
        let desc = sorted(rows.clone(), 1, true);
        let names: Vec<&str> = desc.iter().map(|r| r[0].text.as_str()).collect();
        assert_eq!(names, ["a", "c", "b"]);
        let by_name = sorted(rows, 0, false);
        assert_eq!(by_name[0][0].text, "a");
    }

    #[test]
    fn islands_render_on_the_server_with_their_props() {
        let html = view! {
            <SortableTable
                id="t".to_string()
                headers=vec!["service".to_string()]
                rows=vec![vec![Cell::text("gateway").link("/services/gateway")]]
            />
        }
        .to_html();
        assert!(html.contains("<leptos-island"), "{html}");
        assert!(html.contains("data-component=\"SortableTable_"), "{html}");
        assert!(html.contains("href=\"/services/gateway\""), "{html}");
        assert!(html.contains("data-props="), "{html}");
        let html = view! { <AutoRefresh seconds=30/> }.to_html();
        assert!(html.contains("refresh in 30 s"), "{html}");
    }
}
