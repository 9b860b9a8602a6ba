#[test]
fn man_page_is_current() {
    opsline_testkit::man::assert_pages_current(&opsline::man::pages(
        opsline::cli::command::<ship_sftp::Cli>(ship_sftp::TOOL),
        ship_sftp::EXAMPLES,
    ));
}
