//! An edition's rendered HTML cut once at the markers where a reader's own parts go, so
//! that each digest is a fill of those pieces: string work, no parsing, and its size known
//! before it is made.

/// Rendered HTML cut once at its slots: each digest is then filled in one pass, and its size
/// known without filling it.
pub(super) struct Slotted {
    pieces: Vec<Piece>,
}

enum Piece {
    Text(String),
    /// An index into the slot names the text was cut at.
    Slot(usize),
}

impl Slotted {
    pub(super) fn cut(text: &str, marker: &str, names: &[&str]) -> Self {
        let mut pieces = Vec::new();
        let mut rest = text;
        let mut at = 0;
        while let Some(found) = rest[at..].find(marker) {
            let start = at + found;
            let after = &rest[start + marker.len()..];
            let slot = names
                .iter()
                .position(|name| after.strip_prefix('-').is_some_and(|a| a.starts_with(name)));
            match slot {
                Some(i) => {
                    pieces.push(Piece::Text(rest[..start].to_string()));
                    pieces.push(Piece::Slot(i));
                    rest = &rest[start + marker.len() + 1 + names[i].len()..];
                    at = 0;
                }
                None => at = start + marker.len(),
            }
        }
        pieces.push(Piece::Text(rest.to_string()));
        Self { pieces }
    }

    pub(super) fn len_with(&self, values: &[String]) -> usize {
        self.pieces
            .iter()
            .map(|p| match p {
                Piece::Text(t) => t.len(),
                Piece::Slot(i) => values[*i].len(),
            })
            .sum()
    }

    pub(super) fn fill_into(&self, out: &mut String, values: &[String]) {
        for p in &self.pieces {
            match p {
                Piece::Text(t) => out.push_str(t),
                Piece::Slot(i) => out.push_str(&values[*i]),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_cut_once_and_filled_in_one_pass() {
        let m = "pb0123";
        let text = format!("{m}-rank<p>{m}-badge{m}-reason {m}-other {m}</p>{m}-rank");
        let slotted = Slotted::cut(&text, m, &["rank", "badge", "reason"]);
        let values: [String; 3] = ["3".into(), "W".into(), "U".into()];
        let mut out = String::new();
        slotted.fill_into(&mut out, &values);
        assert_eq!(out, format!("3<p>WU {m}-other {m}</p>3"));
        assert_eq!(slotted.len_with(&values), out.len());
    }
}
