//! Bounded lists: every page and API answer that lists services,
//! operations, edges or metrics shows the busiest `limit` of them (after an
//! optional name search) and says how many it left out, so one flood of
//! names cannot make an answer grow without bound.

/// Services on the overview page.
pub const PAGE_SERVICES: usize = 50;
/// Operations on a service page.
pub const PAGE_OPERATIONS: usize = 100;
/// Callers and callees on a service page.
pub const PAGE_EDGES: usize = 50;
/// Edges on the service map page (nodes are their ends).
pub const MAP_EDGES: usize = 150;
/// Services on the service map page besides the ends of its edges.
pub const MAP_NODES: usize = 100;
/// Metrics in the metrics page's catalogue.
pub const PAGE_METRICS: usize = 200;
/// Default `limit` of the list endpoints of the API.
pub const API_DEFAULT: usize = 1000;
/// Largest `limit` of the list endpoints of the API.
pub const API_MAX: usize = 10_000;

/// The kept items, in their original order, and how many matched.
#[derive(Debug)]
pub struct Top<T> {
    /// At most `limit` items.
    pub items: Vec<T>,
    /// Items that matched the search (kept or not).
    pub matched: usize,
}

impl<T> Top<T> {
    /// Matching items left out.
    pub fn omitted(&self) -> usize {
        self.matched - self.items.len()
    }
}

/// The `limit` items of largest `weight` among those whose `name` contains
/// `search` (case-insensitive), kept in their original order.
pub fn top<T>(
    list: Vec<T>,
    limit: usize,
    search: Option<&str>,
    name: impl Fn(&T) -> &str,
    weight: impl Fn(&T) -> f64,
) -> Top<T> {
    let needle = search
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_lowercase);
    let list: Vec<T> = match &needle {
        Some(n) => list
            .into_iter()
            .filter(|t| name(t).to_lowercase().contains(n.as_str()))
            .collect(),
        None => list,
    };
    let matched = list.len();
    if matched <= limit {
        return Top {
            items: list,
            matched,
        };
    }
    let mut order: Vec<usize> = (0..matched).collect();
    order.sort_by(|&a, &b| {
        weight(&list[b])
            .partial_cmp(&weight(&list[a]))
            .unwrap_or(std::cmp::Ordering::Equal)
            .then(a.cmp(&b))
    });
    let mut keep = vec![false; matched];
    for &i in order.iter().take(limit) {
        keep[i] = true;
    }
    let items = list
        .into_iter()
        .zip(keep)
        .filter_map(|(t, k)| k.then_some(t))
        .collect();
    Top { items, matched }
}

/// A `limit` asked of the API: the default when absent, at most [`API_MAX`].
pub fn api_limit(limit: Option<usize>) -> usize {
    limit.unwrap_or(API_DEFAULT).clamp(1, API_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_heaviest_in_order_and_counts_the_rest() {
        let list = vec![("a", 1.0), ("b", 5.0), ("c", 3.0), ("ab", 4.0)];
        let t = top(list.clone(), 2, None, |x| x.0, |x| x.1);
        assert_eq!(t.items, vec![("b", 5.0), ("ab", 4.0)]);
        assert_eq!((t.matched, t.omitted()), (4, 2));
        let t = top(list.clone(), 1, Some("A"), |x| x.0, |x| x.1);
        assert_eq!(t.items, vec![("ab", 4.0)]);
        assert_eq!((t.matched, t.omitted()), (2, 1));
        let t = top(list, 10, None, |x| x.0, |x| x.1);
        assert_eq!(t.omitted(), 0);
        assert_eq!(api_limit(None), API_DEFAULT);
        assert_eq!(api_limit(Some(1 << 40)), API_MAX);
    }
}
