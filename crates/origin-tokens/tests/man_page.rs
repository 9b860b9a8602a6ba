#[test]
fn man_page_is_current() {
    opsline_testkit::man::assert_pages_current(&opsline::man::pages(
        opsline::cli::command::<origin_tokens::Cli>(origin_tokens::TOOL),
        origin_tokens::EXAMPLES,
    ));
}
