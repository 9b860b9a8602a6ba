#[test]
fn man_page_is_current() {
    opsline_testkit::man::assert_pages_current(&opsline::man::pages(
        opsline::cli::command::<archive_dump::Cli>(archive_dump::TOOL),
        archive_dump::EXAMPLES,
    ));
}
