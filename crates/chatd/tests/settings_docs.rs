//! The README's settings table is made from the settings' declarations
//! (name, default and meaning, written once in the code), so it cannot
//! drift from what the binaries read.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test, with its location

const START: &str = "<!-- settings:";
const END: &str = "<!-- /settings -->";

#[test]
fn the_readme_settings_table_is_made_from_the_declarations() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md");
    let readme = std::fs::read_to_string(&path).unwrap();
    let start = readme
        .find(START)
        .expect("the README marks where the table goes");
    let start = start + readme[start..].find('\n').unwrap() + 1;
    let end = readme
        .find(END)
        .expect("the README marks where the table ends");
    let table = chat_runtime::settings::markdown(&chatd::Settings::groups());
    if std::env::var_os("UPDATE_DOCS").is_some() {
        let updated = format!("{}{table}{}", &readme[..start], &readme[end..]);
        std::fs::write(&path, updated).unwrap();
        return;
    }
    assert!(
        readme[start..end] == table,
        "README.md's settings table is out of date; run \
         UPDATE_DOCS=1 cargo test -p chatd --test settings_docs"
    );
}

#[test]
fn every_declared_setting_has_a_meaning_and_a_unique_name() {
    let mut seen = std::collections::HashSet::new();
    for (title, settings) in chatd::Settings::groups() {
        for setting in settings {
            assert!(
                !setting.meaning.is_empty(),
                "{title}: {} says nothing",
                setting.env
            );
            assert!(
                seen.insert(setting.env.clone()),
                "{} declared twice",
                setting.env
            );
        }
    }
}
