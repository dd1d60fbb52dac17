//! Gathering rows of many batches into one array, one column at a time.
//!
//! A flush writes its rows sorted, so it picks them from all of its input
//! batches in an order that jumps between batches on nearly every row.
//! Picking whole rows (every column of a row, then the next row) misses the
//! cache once per column per row; picking one column for a run of rows keeps
//! that column's inputs in cache, and strings and string maps are copied
//! as byte ranges instead of value by value.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanBufferBuilder, MapArray, RecordBatch, StringArray, StructArray,
};
use arrow::buffer::{NullBuffer, OffsetBuffer, ScalarBuffer};
use arrow::datatypes::DataType;

use crate::error::{Error, Result};

/// Column `col` of `batches` at `picks` (`(batch, row)` positions), in that
/// order. Every batch has the same schema.
pub(crate) fn gather_column(
    batches: &[&RecordBatch],
    col: usize,
    picks: &[(usize, usize)],
) -> Result<ArrayRef> {
    let cols: Vec<&dyn Array> = batches.iter().map(|b| b.column(col).as_ref()).collect();
    let fast = match cols.first().map(|c| c.data_type()) {
        Some(DataType::Utf8) => {
            let strings: Vec<&StringArray> = cols.iter().map(|c| c.as_string::<i32>()).collect();
            Some(Arc::new(gather_strings(
                &strings,
                picks.iter().map(|&(b, r)| (b, r, r + 1)),
                picks.len(),
            )?) as ArrayRef)
        }
        Some(DataType::Map(..)) => gather_string_map(&cols, picks)?,
        _ => None,
    };
    match fast {
        Some(a) => Ok(a),
        None => Ok(arrow::compute::interleave(&cols, picks)?),
    }
}

/// The values of `ranges` (`(array, start, end)`) of `arrays`, concatenated.
fn gather_strings(
    arrays: &[&StringArray],
    ranges: impl Iterator<Item = (usize, usize, usize)>,
    len_hint: usize,
) -> Result<StringArray> {
    let any_nulls = arrays.iter().any(|a| a.null_count() > 0);
    let mut offsets: Vec<i32> = Vec::with_capacity(len_hint + 1);
    offsets.push(0);
    let mut bytes: Vec<u8> = Vec::new();
    let mut nulls = BooleanBufferBuilder::new(if any_nulls { len_hint } else { 0 });
    for (a, start, end) in ranges {
        let array = arrays[a];
        let o = array.value_offsets();
        let (lo, hi) = (o[start] as usize, o[end] as usize);
        let shift = i32::try_from(bytes.len())
            .ok()
            .and_then(|n| n.checked_sub(o[start]))
            .ok_or_else(|| Error::Internal("gathered strings exceed 2 GiB".into()))?;
        bytes.extend_from_slice(&array.values()[lo..hi]);
        offsets.extend(o[start + 1..=end].iter().map(|x| x + shift));
        if any_nulls {
            match array.nulls() {
                Some(n) => (start..end).for_each(|i| nulls.append(n.is_valid(i))),
                None => nulls.append_n(end - start, true),
            }
        }
    }
    if i32::try_from(bytes.len()).is_err() {
        return Err(Error::Internal("gathered strings exceed 2 GiB".into()));
    }
    let nulls = any_nulls.then(|| NullBuffer::new(nulls.finish()));
    Ok(StringArray::try_new(
        OffsetBuffer::new(ScalarBuffer::from(offsets)),
        bytes.into(),
        nulls,
    )?)
}

/// A `Map<Utf8, Utf8>` column gathered entry range by entry range, or `None`
/// when the column is another kind of map or has nulls at the map or
/// entry level (the caller falls back to Arrow's interleave).
fn gather_string_map(cols: &[&dyn Array], picks: &[(usize, usize)]) -> Result<Option<ArrayRef>> {
    let mut maps: Vec<&MapArray> = Vec::with_capacity(cols.len());
    let mut keys: Vec<&StringArray> = Vec::with_capacity(cols.len());
    let mut values: Vec<&StringArray> = Vec::with_capacity(cols.len());
    for c in cols {
        let Some(m) = c.as_map_opt() else {
            return Ok(None);
        };
        if m.null_count() > 0 || m.entries().null_count() > 0 {
            return Ok(None);
        }
        let (Some(k), Some(v)) = (
            m.keys().as_string_opt::<i32>(),
            m.values().as_string_opt::<i32>(),
        ) else {
            return Ok(None);
        };
        maps.push(m);
        keys.push(k);
        values.push(v);
    }
    let Some(first) = maps.first() else {
        return Ok(None);
    };
    let mut offsets: Vec<i32> = Vec::with_capacity(picks.len() + 1);
    offsets.push(0);
    let mut entries = 0i32;
    for &(b, r) in picks {
        let o = maps[b].value_offsets();
        entries = entries
            .checked_add(o[r + 1] - o[r])
            .ok_or_else(|| Error::Internal("gathered map entries exceed 2^31".into()))?;
        offsets.push(entries);
    }
    let ranges = || {
        picks.iter().map(|&(b, r)| {
            let o = maps[b].value_offsets();
            (b, o[r] as usize, o[r + 1] as usize)
        })
    };
    let k = gather_strings(&keys, ranges(), entries as usize)?;
    let v = gather_strings(&values, ranges(), entries as usize)?;
    let DataType::Map(field, ordered) = first.data_type() else {
        return Ok(None);
    };
    let DataType::Struct(fields) = field.data_type() else {
        return Ok(None);
    };
    let entries = StructArray::try_new(fields.clone(), vec![Arc::new(k), Arc::new(v)], None)?;
    Ok(Some(Arc::new(MapArray::try_new(
        field.clone(),
        OffsetBuffer::new(ScalarBuffer::from(offsets)),
        entries,
        None,
        *ordered,
    )?)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{MapBuilder, StringBuilder, UInt32Array};
    use arrow::datatypes::{Field, Schema};

    /// A test row: a nullable string, a string map, a number.
    type Row<'a> = (Option<&'a str>, &'a [(&'a str, Option<&'a str>)], u32);

    fn batch(rows: &[Row]) -> RecordBatch {
        let mut s = StringBuilder::new();
        let mut m = MapBuilder::new(None, StringBuilder::new(), StringBuilder::new());
        let mut n = Vec::new();
        for (text, attrs, num) in rows {
            s.append_option(*text);
            for (k, v) in *attrs {
                m.keys().append_value(k);
                m.values().append_option(*v);
            }
            m.append(true).unwrap();
            n.push(*num);
        }
        let m = m.finish();
        let schema = Schema::new(vec![
            Field::new("s", DataType::Utf8, true),
            Field::new("m", m.data_type().clone(), false),
            Field::new("n", DataType::UInt32, false),
        ]);
        RecordBatch::try_new(
            Arc::new(schema),
            vec![
                Arc::new(s.finish()),
                Arc::new(m),
                Arc::new(UInt32Array::from(n)),
            ],
        )
        .unwrap()
    }

    /// Column by column, the gather equals Arrow's interleave: strings with
    /// and without nulls, maps with null values and empty maps, sliced
    /// inputs, repeated and reversed picks.
    #[test]
    fn gather_equals_interleave() {
        let a = batch(&[
            (Some("alpha"), &[("k1", Some("v1")), ("k2", None)], 1),
            (None, &[], 2),
            (Some(""), &[("only", Some("x"))], 3),
        ]);
        let b = batch(&[
            (Some("beta"), &[("a", Some("1")), ("b", Some("2"))], 4),
            (Some("gamma"), &[("c", Some("3"))], 5),
            (Some("delta"), &[], 6),
            (Some("eps"), &[("z", None)], 7),
        ])
        .slice(1, 3);
        let c = batch(&[(Some("no nulls"), &[("q", Some("r"))], 8)]);
        let picks = [
            (1, 2),
            (0, 1),
            (2, 0),
            (0, 0),
            (1, 0),
            (0, 2),
            (1, 1),
            (0, 0),
        ];
        for inputs in [vec![&a, &b, &c], vec![&c, &c, &c]] {
            let picks: Vec<(usize, usize)> = picks
                .iter()
                .filter(|(x, r)| *r < inputs[*x].num_rows())
                .copied()
                .collect();
            for col in 0..3 {
                let got = gather_column(&inputs, col, &picks).unwrap();
                let cols: Vec<&dyn Array> = inputs.iter().map(|x| x.column(col).as_ref()).collect();
                let want = arrow::compute::interleave(&cols, &picks).unwrap();
                assert_eq!(got.as_ref(), want.as_ref(), "column {col}");
            }
        }
    }
}
