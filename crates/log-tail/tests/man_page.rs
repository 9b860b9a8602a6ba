#[test]
fn man_page_is_current() {
    opsline_testkit::man::assert_pages_current(&opsline::man::pages(
        opsline::cli::command::<log_tail::Cli>(log_tail::TOOL),
        log_tail::EXAMPLES,
    ));
}
