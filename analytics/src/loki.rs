//! Log queries in LogQL's log-query form, for Grafana's Loki data source
//! (trace-to-logs from the Jaeger data source lands here).
//!
//! Supported: a stream selector over the labels `service_name` and `level`
//! (`{service_name="checkout", level=~"error|warn"}`, operators `=`, `!=`,
//! `=~`, `!~`), then any number of line filters (`|= "text"`, `!= "text"`,
//! `|~ "regex"`, `!~ "regex"`) and field filters (`| trace_id="..."`,
//! `| span_id="..."`, `| <attribute>="..."`, with the same four
//! operators). A line filter's text also matches the record's trace id and
//! span id, so `{service_name="x"} |= "<trace id>"` (Grafana's
//! trace-to-logs query) finds the trace's logs. Other pipeline stages
//! (`| json`, `| logfmt`, `| line_format`, ...) and metric queries are
//! refused with a message that says so.
//!
//! A stream is one (service, level); its lines are the log bodies.

use arrow::array::{Array, AsArray};
use arrow::datatypes::Int64Type;
use store::Store;

use crate::red::quote;
use crate::search::ExploreError;

/// The stream labels.
pub const LABELS: [&str; 2] = ["level", "service_name"];

/// The SQL expression of the `level` label: the severity text in lower
/// case, or the level of the severity number when the text is empty.
const LEVEL_SQL: &str = "lower(coalesce(nullif(severity_text, ''), CASE \
     WHEN severity_number >= 21 THEN 'fatal' WHEN severity_number >= 17 THEN 'error' \
     WHEN severity_number >= 13 THEN 'warn' WHEN severity_number >= 9 THEN 'info' \
     WHEN severity_number >= 5 THEN 'debug' WHEN severity_number >= 1 THEN 'trace' \
     ELSE 'unknown' END))";

/// A parsed log query.
#[derive(Debug, Clone, PartialEq)]
pub struct LogQuery {
    /// SQL conditions, all of which must hold.
    conditions: Vec<String>,
}

fn bad(msg: impl Into<String>) -> ExploreError {
    ExploreError::BadRequest(msg.into())
}

struct Lexer<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Lexer<'a> {
    fn skip_ws(&mut self) {
        while self.s[self.pos..].starts_with(|c: char| c.is_whitespace()) {
            self.pos += self.s[self.pos..].chars().next().map_or(1, char::len_utf8);
        }
    }

    fn eat(&mut self, tok: &str) -> bool {
        self.skip_ws();
        if self.s[self.pos..].starts_with(tok) {
            self.pos += tok.len();
            true
        } else {
            false
        }
    }

    fn done(&mut self) -> bool {
        self.skip_ws();
        self.pos >= self.s.len()
    }

    fn ident(&mut self) -> Result<&'a str, ExploreError> {
        self.skip_ws();
        let rest = &self.s[self.pos..];
        let n = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
            .unwrap_or(rest.len());
        if n == 0 {
            return Err(bad(format!(
                "parse error at position {}: expected a label name",
                self.pos + 1
            )));
        }
        self.pos += n;
        Ok(&rest[..n])
    }

    fn op(&mut self) -> Result<&'static str, ExploreError> {
        for op in ["=~", "!~", "!=", "="] {
            if self.eat(op) {
                return Ok(op);
            }
        }
        Err(bad(format!(
            "parse error at position {}: expected =, !=, =~ or !~",
            self.pos + 1
        )))
    }

    fn string(&mut self) -> Result<String, ExploreError> {
        self.skip_ws();
        let rest = &self.s[self.pos..];
        if let Some(r) = rest.strip_prefix('`') {
            let end = r
                .find('`')
                .ok_or_else(|| bad("parse error: unterminated raw string"))?;
            self.pos += end + 2;
            return Ok(r[..end].to_string());
        }
        let Some(r) = rest.strip_prefix('"') else {
            return Err(bad(format!(
                "parse error at position {}: expected a quoted string",
                self.pos + 1
            )));
        };
        let mut out = String::new();
        let mut chars = r.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => {
                    self.pos += i + 2;
                    return Ok(out);
                }
                '\\' => match chars.next() {
                    Some((_, 'n')) => out.push('\n'),
                    Some((_, 't')) => out.push('\t'),
                    Some((_, e)) => out.push(e),
                    None => break,
                },
                c => out.push(c),
            }
        }
        Err(bad("parse error: unterminated string"))
    }
}

fn regex_ok(re: &str) -> Result<(), ExploreError> {
    if re.len() > 1000 {
        return Err(bad("regular expression longer than 1000 characters"));
    }
    Ok(())
}

/// `expr op value` as SQL (`=~` and `!~` fully anchored, as in Loki).
fn compare(expr: &str, op: &str, value: &str) -> Result<String, ExploreError> {
    Ok(match op {
        "=" => format!("{expr} = {}", quote(value)),
        "!=" => format!("({expr} IS NULL OR {expr} <> {})", quote(value)),
        "=~" => {
            regex_ok(value)?;
            format!(
                "regexp_like(coalesce({expr}, ''), {})",
                quote(&format!("^(?:{value})$"))
            )
        }
        _ => {
            regex_ok(value)?;
            format!(
                "NOT regexp_like(coalesce({expr}, ''), {})",
                quote(&format!("^(?:{value})$"))
            )
        }
    })
}

/// Whether a query is a log query (a stream selector first).
pub fn is_log_query(q: &str) -> bool {
    q.trim_start().starts_with('{')
}

impl LogQuery {
    /// Parses a log query.
    pub fn parse(q: &str) -> Result<LogQuery, ExploreError> {
        let mut lx = Lexer { s: q, pos: 0 };
        if !lx.eat("{") {
            return Err(bad(
                "only log queries are supported: start with a stream selector such as {service_name=\"checkout\"}",
            ));
        }
        let mut conditions = Vec::new();
        let mut matchers = 0;
        if !lx.eat("}") {
            loop {
                let name = lx.ident()?;
                let op = lx.op()?;
                let value = lx.string()?;
                let expr = match name {
                    "service_name" => "service_name".to_string(),
                    "level" | "detected_level" => LEVEL_SQL.to_string(),
                    other => {
                        return Err(bad(format!(
                            "unknown stream label {other:?}: streams are labelled service_name and level"
                        )));
                    }
                };
                conditions.push(compare(&expr, op, &value)?);
                matchers += 1;
                if lx.eat("}") {
                    break;
                }
                if !lx.eat(",") {
                    return Err(bad(format!(
                        "parse error at position {}: expected , or }}",
                        lx.pos + 1
                    )));
                }
            }
        }
        if matchers == 0 {
            return Err(bad(
                "queries require at least one label matcher, e.g. {service_name=\"checkout\"}",
            ));
        }
        while !lx.done() {
            let line = if lx.eat("|=") {
                Some("=")
            } else if lx.eat("|~") {
                Some("~")
            } else if lx.eat("!=") {
                Some("!=")
            } else if lx.eat("!~") {
                Some("!~")
            } else {
                None
            };
            if let Some(kind) = line {
                let v = lx.string()?;
                let hit = format!(
                    "(strpos(coalesce(body, ''), {v}) > 0 OR coalesce(trace_id, '') = {v} OR coalesce(span_id, '') = {v})",
                    v = quote(&v)
                );
                conditions.push(match kind {
                    "=" => hit,
                    "!=" => format!("NOT {hit}"),
                    "~" => {
                        regex_ok(&v)?;
                        format!("regexp_like(coalesce(body, ''), {})", quote(&v))
                    }
                    _ => {
                        regex_ok(&v)?;
                        format!("NOT regexp_like(coalesce(body, ''), {})", quote(&v))
                    }
                });
                continue;
            }
            if lx.eat("|") {
                let name = lx.ident()?;
                lx.skip_ws();
                if !lx.s[lx.pos..].starts_with(['=', '!']) {
                    return Err(bad(format!(
                        "the pipeline stage | {name} is not supported: use line filters (|= \"text\") and field filters (| trace_id=\"...\")"
                    )));
                }
                let op = lx.op()?;
                let value = lx.string()?;
                let expr = match name {
                    "trace_id" | "traceid" | "traceID" => "trace_id".to_string(),
                    "span_id" | "spanid" | "spanID" => "span_id".to_string(),
                    "service_name" => "service_name".to_string(),
                    "level" | "detected_level" => LEVEL_SQL.to_string(),
                    other => format!(
                        "coalesce(attributes[{k}], resource_attributes[{k}])",
                        k = quote(other)
                    ),
                };
                let value = if expr == "trace_id" || expr == "span_id" {
                    value.to_ascii_lowercase()
                } else {
                    value
                };
                conditions.push(compare(&expr, op, &value)?);
                continue;
            }
            return Err(bad(format!(
                "parse error at position {}: expected a line filter (|=, !=, |~, !~) or | field=\"value\"",
                lx.pos + 1
            )));
        }
        Ok(LogQuery { conditions })
    }
}

/// One stream of an answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Stream {
    /// `service_name`.
    pub service: String,
    /// `level`.
    pub level: String,
    /// `(time ns, line)`, in the answer's direction.
    pub values: Vec<(i64, String)>,
}

/// The lines matching `q` in `[from_ns, to_ns]`, at most `limit`, newest
/// first (`forward`: oldest first), grouped into streams.
pub async fn query(
    store: &Store,
    q: &LogQuery,
    from_ns: i64,
    to_ns: i64,
    limit: usize,
    forward: bool,
) -> Result<Vec<Stream>, ExploreError> {
    let dir = if forward { "ASC" } else { "DESC" };
    let conditions = q.conditions.join(" AND ");
    // One slice at a time from the requested end ([`crate::search::sliced_logs`]):
    // a query whose limit the last hour fills reads only that hour.
    let batches = crate::search::sliced_logs(
        store,
        store.snapshot(store::Table::Logs),
        from_ns,
        to_ns.saturating_add(1),
        limit.clamp(1, 5000),
        !forward,
        |lo, hi, n| {
            format!(
                "SELECT arrow_cast(time, 'Int64') AS t, service_name, {LEVEL_SQL} AS level, coalesce(body, '') AS body \
                 FROM logs WHERE time >= to_timestamp_nanos({lo}) AND time < to_timestamp_nanos({hi}) AND {conditions} \
                 ORDER BY time {dir} LIMIT {n}"
            )
        },
    )
    .await?;
    let mut streams: Vec<Stream> = Vec::new();
    for b in &batches {
        let t = b.column(0).as_primitive::<Int64Type>();
        let svc = b.column(1).as_string::<i32>();
        let lvl = b.column(2).as_string::<i32>();
        let body = b.column(3).as_string::<i32>();
        for i in 0..b.num_rows() {
            let (s, l) = (svc.value(i), if lvl.is_null(i) { "" } else { lvl.value(i) });
            let line = (t.value(i), body.value(i).to_string());
            match streams.iter_mut().find(|x| x.service == s && x.level == l) {
                Some(x) => x.values.push(line),
                None => streams.push(Stream {
                    service: s.to_string(),
                    level: l.to_string(),
                    values: vec![line],
                }),
            }
        }
    }
    Ok(streams)
}

/// The values of a stream label in `[from_ns, to_ns]`, sorted.
pub async fn label_values(
    store: &Store,
    label: &str,
    from_ns: i64,
    to_ns: i64,
) -> Result<Vec<String>, ExploreError> {
    let expr = match label {
        "service_name" => "service_name",
        "level" | "detected_level" => LEVEL_SQL,
        _ => return Ok(Vec::new()),
    };
    let sql = format!(
        "SELECT DISTINCT {expr} AS v FROM logs WHERE time >= to_timestamp_nanos({from_ns}) \
         AND time <= to_timestamp_nanos({to_ns}) ORDER BY 1"
    );
    let batches = store::query::collect(store, &sql)
        .await
        .map_err(|e| ExploreError::Query(e.to_string()))?;
    let mut out = Vec::new();
    for b in &batches {
        let c = b.column(0).as_string::<i32>();
        out.extend(
            (0..b.num_rows())
                .filter(|i| !c.is_null(*i))
                .map(|i| c.value(i).to_string()),
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_grafana_trace_to_logs_queries() {
        let q =
            LogQuery::parse(r#"{service_name="checkout"} |="0af7651916cd43dd8448eb211c80319c""#)
                .unwrap();
        assert_eq!(q.conditions.len(), 2);
        assert!(
            q.conditions[1].contains("coalesce(trace_id, '') = '0af7651916cd43dd8448eb211c80319c'")
        );
        let q = LogQuery::parse(
            r#"{service_name=~"check.*", level!="debug"} != "health" |~ `tim(e|ed) out` | trace_id="ABC" | user.id="u-1""#,
        )
        .unwrap();
        assert_eq!(q.conditions.len(), 6);
        assert!(q.conditions[4].contains("trace_id = 'abc'"));
        assert!(q.conditions[5].contains("attributes['user.id']"));
    }

    #[test]
    fn refuses_what_it_cannot_answer() {
        for (q, says) in [
            ("rate({service_name=\"x\"}[5m])", "only log queries"),
            ("{}", "at least one label matcher"),
            ("{pod=\"x\"}", "unknown stream label"),
            ("{service_name=\"x\"} | json", "not supported"),
            ("{service_name=\"x\"", "expected , or }"),
            ("{service_name=\"x} ", "unterminated"),
            ("{service_name=\"x\"} |= 42", "quoted string"),
        ] {
            let e = LogQuery::parse(q).unwrap_err().to_string();
            assert!(e.contains(says), "{q}: {e}");
        }
    }
}
