//! The committed man page matches the option definitions.

#[test]
fn man_page_is_current() {
    opsline_testkit::man::assert_pages_current(&opsline::man::pages(
        opsline::cli::command::<watch_uploads::Cli>(watch_uploads::TOOL),
        watch_uploads::EXAMPLES,
    ));
}
