#pragma once
// The service's web page (GET /): one self-contained HTML document (inline CSS and JavaScript, no
// external resources) that drives the REST API from a browser: detect, search, enrol, list and
// delete persons. The bearer token typed into it stays in the page's memory only.
#include <string_view>

namespace arcforge::serve {

// The page, UTF-8 HTML; static storage, valid for the whole program.
std::string_view web_page_html();

}  // namespace arcforge::serve
