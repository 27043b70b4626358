// The embedded default training text, so the quick start trains without downloading data:
// original English prose, about 27 KB, byte-tokenized by the text data source.
#pragma once

#include <string_view>

namespace autotp {

// The whole corpus (ASCII, '\n' line ends). Static storage: the view never dangles.
std::string_view embedded_corpus();

// The name data sources and summaries use for it.
inline constexpr const char* kEmbeddedCorpusName = "embedded corpus";

}  // namespace autotp
