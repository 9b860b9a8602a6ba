#[test]
fn man_page_is_current() {
    opsline_testkit::man::assert_pages_current(&opsline::man::pages(
        opsline::cli::command::<notify::Cli>(notify::TOOL),
        notify::EXAMPLES,
    ));
}
