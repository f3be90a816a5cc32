//! `cert list` output written as the entries arrive, on the store or through the server: a
//! JSON array element by element (`-o json`), or a table line by line, so listing a million
//! certificates holds one entry in memory at a time (it used to build them all first: 6.9 GB
//! for 1M). Rows are serialised straight from typed fields (no JSON value per entry) into a
//! buffered writer: standard output is line-buffered, which cost one `write` per entry.

use std::io::{BufWriter, Write};

use serde::Serialize;

use crate::cli::Output;
use crate::error::{Error, Result};

/// The text columns of one row.
pub(super) struct Columns {
    pub serial: String,
    pub binding: String,
    pub usage: String,
    pub status: String,
    pub not_after: String,
    /// The organisation id, or `-`.
    pub organisation: String,
    pub holder: String,
}

/// One row of `cert list`: its JSON object (the fields in the order `cert list -o json` has
/// always printed them: alphabetical) and its text columns.
pub(super) trait ListRow: Serialize {
    fn columns(&self) -> Columns;
}

/// Writes the listing to `out` as entries arrive.
pub(super) struct ListWriter<W: Write> {
    out: BufWriter<W>,
    mode: Output,
    written: u64,
}

impl<W: Write> ListWriter<W> {
    /// Starts the listing (the table header, or the array's opening bracket).
    pub(super) fn start(out: W, mode: Output) -> Result<ListWriter<W>> {
        let mut out = BufWriter::with_capacity(64 * 1024, out);
        match mode {
            Output::Json => write!(out, "["),
            Output::Text => writeln!(
                out,
                "{:<32}  {:<8}  {:<10}  {:<12}  {:<25}  {:<16}  HOLDER",
                "SERIAL", "BINDING", "USAGE", "STATUS", "NOT AFTER", "ORGANISATION"
            ),
        }
        .map_err(stdout_error)?;
        Ok(ListWriter {
            out,
            mode,
            written: 0,
        })
    }

    /// One entry (the `cert list -o json` row).
    pub(super) fn entry(&mut self, row: &impl ListRow) -> Result<()> {
        match self.mode {
            Output::Json => {
                let sep = if self.written == 0 { "\n  " } else { ",\n  " };
                self.out.write_all(sep.as_bytes()).map_err(stdout_error)?;
                serde_json::to_writer(&mut self.out, row).map_err(|e| {
                    if e.is_io() {
                        stdout_error(e.into())
                    } else {
                        Error::InvalidInput(e.to_string())
                    }
                })?;
            }
            Output::Text => {
                let c = row.columns();
                writeln!(
                    self.out,
                    "{:<32}  {:<8}  {:<10}  {:<12}  {:<25}  {:<16}  {}",
                    c.serial, c.binding, c.usage, c.status, c.not_after, c.organisation, c.holder
                )
                .map_err(stdout_error)?;
            }
        }
        self.written += 1;
        Ok(())
    }

    /// Ends the listing (the array's closing bracket) and flushes.
    pub(super) fn finish(mut self) -> Result<u64> {
        if matches!(self.mode, Output::Json) {
            let end = if self.written == 0 { "]\n" } else { "\n]\n" };
            self.out.write_all(end.as_bytes()).map_err(stdout_error)?;
        }
        self.out.flush().map_err(stdout_error)?;
        Ok(self.written)
    }
}

fn stdout_error(e: std::io::Error) -> Error {
    Error::io("stdout", e)
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    #[derive(Serialize)]
    struct Row {
        holder: &'static str,
        organisation: Option<&'static str>,
        serial: String,
    }

    impl ListRow for Row {
        fn columns(&self) -> Columns {
            Columns {
                serial: self.serial.clone(),
                binding: String::new(),
                usage: String::new(),
                status: String::new(),
                not_after: String::new(),
                organisation: self.organisation.unwrap_or("-").to_string(),
                holder: self.holder.to_string(),
            }
        }
    }

    #[test]
    fn json_listing_is_one_valid_array_whatever_the_count() {
        for n in [0usize, 1, 3] {
            let mut buf = Vec::new();
            let mut w = ListWriter::start(&mut buf, Output::Json).unwrap();
            for i in 0..n {
                w.entry(&Row {
                    holder: "a@b.example",
                    organisation: None,
                    serial: format!("0{i}"),
                })
                .unwrap();
            }
            assert_eq!(w.finish().unwrap(), n as u64);
            let v: Value = serde_json::from_slice(&buf).unwrap();
            let serials: Vec<&str> = v
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["serial"].as_str().unwrap())
                .collect();
            assert_eq!(
                serials.len(),
                n,
                "case {n}: {}",
                String::from_utf8_lossy(&buf)
            );
            if n > 0 {
                assert_eq!(serials[n - 1], format!("0{}", n - 1));
            }
        }
    }

    #[test]
    fn text_listing_has_a_header_and_one_line_per_entry() {
        let mut buf = Vec::new();
        let mut w = ListWriter::start(&mut buf, Output::Text).unwrap();
        w.entry(&Row {
            holder: "a@b.example",
            organisation: Some("clinic"),
            serial: "0a".into(),
        })
        .unwrap();
        w.finish().unwrap();
        let text = String::from_utf8(buf).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(lines[0].starts_with("SERIAL"));
        assert!(
            lines[1].starts_with("0a")
                && lines[1].contains("clinic")
                && lines[1].ends_with("a@b.example")
        );
    }
}
