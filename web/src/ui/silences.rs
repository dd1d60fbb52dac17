//! `/silences`: create a silence (label matchers, a length, author and
//! comment), list every silence with its state, expire one. Plain HTML
//! forms posted to the server (they work before, and without, the wasm
//! bundle); each answers with a redirect back to the list (303), or with
//! the form again and what was wrong (400).

use axum::extract::{Form, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use leptos::prelude::*;
use serde::Deserialize;
use slo_engine::engine::now_ns;
use slo_engine::silences::{Matcher, NewSilence, Silence};

use super::{StateBadge, ViewParams, error_page, page};
use crate::WebState;

/// The create form's fields.
#[derive(Debug, Default, Clone, Deserialize)]
pub struct SilenceForm {
    /// Matchers, one per line or separated by commas: `service="payments"`,
    /// `severity!="ticket"`, `slo=~"checkout-.*"`.
    pub matchers: Option<String>,
    /// Length from now, e.g. `2h`.
    pub duration: Option<String>,
    /// Who silences.
    pub created_by: Option<String>,
    /// Why.
    pub comment: Option<String>,
}

/// `/silences` query parameters besides the view.
#[derive(Debug, Default, Deserialize)]
pub struct ListParams {
    /// Pre-fills the form's matchers (links from incidents).
    pub matchers: Option<String>,
    /// The silence just created (highlighted).
    pub created: Option<i64>,
}

/// Splits the matchers field (lines or commas outside quotes) into matchers.
pub fn parse_matchers(text: &str) -> Result<Vec<Matcher>, String> {
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in text.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                cur.push(c);
            }
            ',' | '\n' | '\r' if !quoted => parts.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    parts.push(cur);
    let matchers = parts
        .iter()
        .map(|p| p.trim())
        .filter(|p| !p.is_empty())
        .map(Matcher::parse)
        .collect::<Result<Vec<_>, _>>()?;
    if matchers.is_empty() {
        return Err("give at least one matcher, e.g. service=\"payments\"".into());
    }
    Ok(matchers)
}

/// The silence a form describes, starting at `now`.
fn new_silence(f: &SilenceForm, now: i64) -> Result<NewSilence, String> {
    let matchers = parse_matchers(f.matchers.as_deref().unwrap_or(""))?;
    let d = f.duration.as_deref().unwrap_or("").trim();
    let len = humantime::parse_duration(d)
        .map_err(|e| format!("duration {d:?}: {e} (e.g. 30m, 2h, 1d)"))?;
    if len.as_secs() < 60 {
        return Err(format!("duration {d:?} is shorter than a minute"));
    }
    let by = f.created_by.as_deref().unwrap_or("").trim().to_string();
    if by.is_empty() {
        return Err("say who creates the silence".into());
    }
    let comment = f.comment.as_deref().unwrap_or("").trim().to_string();
    if comment.is_empty() {
        return Err("say why (the comment), for whoever finds the silence".into());
    }
    Ok(NewSilence {
        matchers,
        starts_at_ns: None,
        ends_at_ns: now.saturating_add(len.as_nanos().min(i64::MAX as u128) as i64),
        created_by: by,
        comment,
    })
}

fn matcher_text(m: &Matcher) -> String {
    let op = match (m.is_equal, m.is_regex) {
        (true, false) => "=",
        (false, false) => "!=",
        (true, true) => "=~",
        (false, true) => "!~",
    };
    format!("{}{op}\"{}\"", m.name, m.value)
}

fn when(ns: i64) -> String {
    slo_engine::notify::rfc3339(ns)
}

/// The page: the form (with `error` above it, if any) and the list.
async fn render(
    s: &WebState,
    v: &ViewParams,
    form: SilenceForm,
    created: Option<i64>,
    error: Option<String>,
) -> Response {
    let view = match v.view() {
        Ok(v) => v,
        Err(r) => return r,
    };
    let Some(engine) = s.slo.clone() else {
        return error_page(
            StatusCode::NOT_FOUND,
            "No alerting",
            "No SLO engine is running (no rules directory), so there is nothing to silence.".into(),
        );
    };
    let list: Vec<Silence> = match engine.silences().list(now_ns()) {
        Ok(l) => l,
        Err(e) => {
            return error_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Silences",
                format!("cannot read the silences: {e}"),
            );
        }
    };
    let val = |o: &Option<String>| o.clone().unwrap_or_default();
    let status = if error.is_some() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    let q = view.query.clone();
    let rows = if list.is_empty() {
        view! { <p class="muted">"No silences."</p> }.into_any()
    } else {
        view! {
            <table id="silence-list">
                <tr><th>"#"</th><th>"matchers"</th><th>"state"</th><th>"starts"</th><th>"ends"</th><th>"by"</th><th>"comment"</th><th></th></tr>
                {list
                    .into_iter()
                    .map(|x| {
                        let expire = (x.state != "expired").then(|| {
                            let action = format!("/silences/{}/expire?{q}", x.id);
                            view! {
                                <form method="post" action=action class="expire">
                                    <button type="submit" class="expire-button">"Expire"</button>
                                </form>
                            }
                        });
                        let class = if Some(x.id) == created { "created" } else { "" };
                        view! {
                            <tr id=format!("silence-{}", x.id) class=class>
                                <td>{x.id}</td>
                                <td><code>{x.matchers.iter().map(matcher_text).collect::<Vec<_>>().join(", ")}</code></td>
                                <td><StateBadge state=x.state.to_string()/></td>
                                <td>{when(x.starts_at_ns)}</td>
                                <td>{when(x.ends_at_ns)}</td>
                                <td>{x.created_by}</td>
                                <td>{x.comment}</td>
                                <td>{expire}</td>
                            </tr>
                        }
                    })
                    .collect_view()}
            </table>
        }
        .into_any()
    };
    let action = format!("/silences?{q}");
    let body = view! {
        <h1>"Silences"</h1>
        <section id="new-silence">
            <h2>"New silence"</h2>
            {error.map(|e| view! { <p class="error" id="silence-error">{e}</p> })}
            <form method="post" action=action class="search">
                <label>"matchers "
                    <input name="matchers" size="40" placeholder="service=\"payments\", severity=\"page\"" value=val(&form.matchers)/>
                </label>
                <label>" for " <input name="duration" size="5" value=form.duration.clone().unwrap_or_else(|| "2h".into())/></label>
                <label>" by " <input name="created_by" size="10" value=val(&form.created_by)/></label>
                <label>" comment " <input name="comment" size="30" value=val(&form.comment)/></label>
                " " <button type="submit" class="create-silence">"Create"</button>
            </form>
            <p class="muted">"Notifications whose labels (alertname, slo, service, severity, and a rule's own labels) match every matcher are held back while the silence is active; incidents still open and close."</p>
        </section>
        <section>{rows}</section>
    }
    .to_html();
    let mut r = page("Silences", Some(&view), "/silences", body);
    *r.status_mut() = status;
    r
}

/// `GET /silences`.
pub async fn list(
    State(s): State<WebState>,
    Query(v): Query<ViewParams>,
    Query(p): Query<ListParams>,
) -> Response {
    let form = SilenceForm {
        matchers: p.matchers,
        ..Default::default()
    };
    render(&s, &v, form, p.created, None).await
}

/// `POST /silences`: creates one; 303 to the list, or 400 with the form.
pub async fn create(
    State(s): State<WebState>,
    Query(v): Query<ViewParams>,
    Form(f): Form<SilenceForm>,
) -> Response {
    let Some(engine) = s.slo.clone() else {
        return render(&s, &v, f, None, None).await;
    };
    let now = now_ns();
    let created = new_silence(&f, now).and_then(|n| engine.silences().create(&n, now));
    match created {
        Ok(id) => {
            let view = v.resolve().map(|v| v.query).unwrap_or_default();
            Redirect::to(&format!("/silences?{view}&created={id}")).into_response()
        }
        Err(e) => render(&s, &v, f, None, Some(e)).await,
    }
}

/// `POST /silences/{id}/expire`: ends a silence now; 303 to the list.
pub async fn expire(
    State(s): State<WebState>,
    Path(id): Path<i64>,
    Query(v): Query<ViewParams>,
) -> Response {
    let Some(engine) = s.slo.clone() else {
        return render(&s, &v, SilenceForm::default(), None, None).await;
    };
    match engine.silences().expire(id, now_ns()) {
        Ok(true) => {
            let view = v.resolve().map(|v| v.query).unwrap_or_default();
            Redirect::to(&format!("/silences?{view}")).into_response()
        }
        Ok(false) => error_page(
            StatusCode::NOT_FOUND,
            "Silences",
            format!("No silence {id} that has not ended."),
        ),
        Err(e) => error_page(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Silences",
            format!("cannot expire silence {id}: {e}"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matchers_split_on_lines_and_commas_outside_quotes() {
        let m = parse_matchers("service=\"payments\", slo=~\"a,b|c\"\nseverity!=ticket").unwrap();
        let text: Vec<String> = m.iter().map(matcher_text).collect();
        assert_eq!(
            text,
            [
                "service=\"payments\"",
                "slo=~\"a,b|c\"",
                "severity!=\"ticket\""
            ]
        );
        assert!(parse_matchers(" , ").unwrap_err().contains("at least one"));
        assert!(
            parse_matchers("9bad=\"x\"")
                .unwrap_err()
                .contains("label name")
        );
    }

    #[test]
    fn a_form_needs_a_length_an_author_and_a_reason() {
        let ok = SilenceForm {
            matchers: Some("service=\"payments\"".into()),
            duration: Some("2h".into()),
            created_by: Some("alice".into()),
            comment: Some("deploy".into()),
        };
        let n = new_silence(&ok, 1_000).unwrap();
        assert_eq!(n.ends_at_ns, 1_000 + 7_200_000_000_000);
        let e = |f: SilenceForm| new_silence(&f, 0).unwrap_err();
        assert!(
            e(SilenceForm {
                duration: Some("soon".into()),
                ..ok.clone()
            })
            .contains("duration")
        );
        assert!(
            e(SilenceForm {
                duration: Some("10s".into()),
                ..ok.clone()
            })
            .contains("shorter")
        );
        assert!(
            e(SilenceForm {
                created_by: Some(" ".into()),
                ..ok.clone()
            })
            .contains("who")
        );
        assert!(
            e(SilenceForm {
                comment: None,
                ..ok
            })
            .contains("why")
        );
    }
}
