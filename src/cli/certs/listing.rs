//! `cert list` output written as the entries arrive, on the store or through the server: a
//! JSON array element by element (`-o json`), or a table line by line, so listing a million
//! certificates holds one entry in memory at a time (it used to build them all first: 6.9 GB
//! for 1M).

use std::io::Write;

use serde_json::Value;

use crate::cli::Output;
use crate::error::{Error, Result};

/// Writes the listing to `out` as entries arrive.
pub(super) struct ListWriter<W: Write> {
    out: W,
    mode: Output,
    written: u64,
}

impl<W: Write> ListWriter<W> {
    /// Starts the listing (the table header, or the array's opening bracket).
    pub(super) fn start(mut out: W, mode: Output) -> Result<ListWriter<W>> {
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
    pub(super) fn entry(&mut self, row: &Value) -> Result<()> {
        match self.mode {
            Output::Json => {
                let sep = if self.written == 0 { "\n  " } else { ",\n  " };
                self.out.write_all(sep.as_bytes()).map_err(stdout_error)?;
                serde_json::to_writer(&mut self.out, row)
                    .map_err(|e| Error::InvalidInput(e.to_string()))?;
            }
            Output::Text => {
                let s = |k: &str| row[k].as_str().unwrap_or_default().to_string();
                writeln!(
                    self.out,
                    "{:<32}  {:<8}  {:<10}  {:<12}  {:<25}  {:<16}  {}",
                    s("serial"),
                    s("binding"),
                    s("usage"),
                    s("status"),
                    s("not_after"),
                    row.pointer("/organisation/id")
                        .and_then(Value::as_str)
                        .unwrap_or("-"),
                    s("holder")
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
    use serde_json::json;

    use super::*;

    #[test]
    fn json_listing_is_one_valid_array_whatever_the_count() {
        for n in [0usize, 1, 3] {
            let mut buf = Vec::new();
            let mut w = ListWriter::start(&mut buf, Output::Json).unwrap();
            for i in 0..n {
                w.entry(&json!({"serial": format!("0{i}"), "holder": "a@b.example"}))
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
        w.entry(
            &json!({"serial": "0a", "holder": "a@b.example", "organisation": {"id": "clinic"}}),
        )
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
