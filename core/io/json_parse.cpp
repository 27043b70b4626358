// json::parse: yaml-cpp builds the tree (YAML 1.2 reads JSON); a lexical pass before it and node
// checks after it reject everything YAML accepts that JSON does not (comments, trailing commas...).
#include <yaml-cpp/yaml.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <unordered_set>

#include "core/io/json.h"

namespace autotp::json {

// Fills Value's private fields while the parser walks the yaml-cpp tree.
struct ValueAccess {
  static void init(Value& v, Kind kind, std::string path,
                   const std::shared_ptr<const std::string>& source) {
    v.kind_ = kind;
    v.path_ = std::move(path);
    v.source_ = source;
  }
  static void set_bool(Value& v, bool b) { v.bool_ = b; }
  static void set_text(Value& v, std::string text) { v.text_ = std::move(text); }
  static void append(Value& v, std::string key, Value item) {
    if (v.kind_ == Kind::Object) v.keys_.push_back(std::move(key));
    v.items_.push_back(std::move(item));
  }
};

namespace {

constexpr int kMaxDepth = 512;
// yaml-cpp reads a JSON key as a YAML "simple key", which it limits to 1024 characters.
constexpr size_t kMaxKeySpan = 1024;

bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

// Characters of numbers, true/false/null and NaN/Infinity.
bool is_literal_char(char c) {
  return (c >= '0' && c <= '9') || c == '-' || c == '+' || c == '.' ||
         std::string_view("truefalsnENIiy").find(c) != std::string_view::npos;
}

// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?, plus NaN, Infinity, -Infinity.
bool is_number_literal(std::string_view s) {
  if (s == "NaN" || s == "Infinity" || s == "-Infinity") return true;
  size_t i = 0;
  auto digits = [&] {
    const size_t start = i;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9')
      ++i;
    return i > start;
  };
  if (i < s.size() && s[i] == '-') ++i;
  if (i < s.size() && s[i] == '0') {
    ++i;
  } else if (!digits()) {
    return false;
  }
  if (i < s.size() && s[i] == '.') {
    ++i;
    if (!digits()) return false;
  }
  if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
    ++i;
    if (i < s.size() && (s[i] == '+' || s[i] == '-')) ++i;
    if (!digits()) return false;
  }
  return i == s.size();
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// The four hex digits at text[at..at+4) as a code unit, or -1.
long hex4(std::string_view text, size_t at) {
  if (at + 4 > text.size()) return -1;
  long v = 0;
  for (size_t k = 0; k < 4; ++k) {
    const int h = hex_value(text[at + k]);
    if (h < 0) return -1;
    v = v * 16 + h;
  }
  return v;
}

std::string printable(char c) {
  const auto u = static_cast<unsigned char>(c);
  return (u >= 0x20 && u < 0x7f) ? fmt::format("'{}'", c) : fmt::format("byte 0x{:02x}", u);
}

class Lexer {
 public:
  Lexer(std::string_view text, const std::string& source) : text_(text), source_(source) {}

  // Checks the token stream for strict JSON and returns the text yaml-cpp should read: the
  // same text with UTF-16 surrogate pairs (which yaml-cpp rejects) written as \UXXXXXXXX and
  // any whitespace between a key and its ':' moved after the ':' (lines and columns stay).
  std::string run() {
    out_.reserve(text_.size());
    int depth = 0;
    bool root_done = false;
    bool any = false;
    size_t i = 0;
    while (i < text_.size()) {
      const char c = text_[i];
      if (is_space(c)) {
        out_ += c;
        ++i;
        continue;
      }
      if (root_done) fail(i, "unexpected content after the end of the document");
      any = true;
      if (c == '"') {
        const size_t start = i;
        i = copy_string(i);
        if (depth == 0) root_done = true;
        size_t j = i;
        while (j < text_.size() && is_space(text_[j]))
          ++j;
        if (j < text_.size() && text_[j] == ':') {
          if (i - start > kMaxKeySpan) {
            fail(start, fmt::format("object keys longer than {} bytes are not supported",
                                    kMaxKeySpan - 2));
          }
          out_ += ':';
          out_.append(text_.substr(i, j - i));
          i = j + 1;
        }
        continue;
      }
      if (c == '{' || c == '[') {
        if (++depth > kMaxDepth) fail(i, fmt::format("nested deeper than {} levels", kMaxDepth));
      } else if (c == '}' || c == ']') {
        if (depth == 0) fail(i, fmt::format("unexpected '{}'", c));
        if (--depth == 0) root_done = true;
      } else if (c == ',') {
        size_t j = i + 1;
        while (j < text_.size() && is_space(text_[j]))
          ++j;
        if (j < text_.size() && (text_[j] == '}' || text_[j] == ']')) {
          fail(i, fmt::format("trailing comma before '{}'", text_[j]));
        }
      } else if (c != ':' && !is_literal_char(c)) {
        fail(i, fmt::format("unexpected character {}", printable(c)));
      }
      out_ += c;
      ++i;
    }
    if (!any) fail(text_.size(), "the document is empty (expected a JSON value)");
    return std::move(out_);
  }

  // Throws the error for `what` at byte `offset` of the text, with its line and column.
  [[noreturn]] void fail(size_t offset, const std::string& what) const {
    size_t line = 1, column = 1;
    for (size_t k = 0; k < offset && k < text_.size(); ++k) {
      if (text_[k] == '\n') {
        ++line;
        column = 1;
      } else {
        ++column;
      }
    }
    AUTOTP_FAIL("{}: invalid JSON at line {}, column {}: {}", source_, line, column, what);
  }

 private:
  // Copies the string starting at text_[start] == '"'; returns the index after its closing quote.
  size_t copy_string(size_t start) {
    out_ += '"';
    size_t i = start + 1;
    while (true) {
      if (i >= text_.size()) fail(start, "unterminated string");
      const char c = text_[i];
      if (c == '"') {
        out_ += '"';
        return i + 1;
      }
      if (static_cast<unsigned char>(c) < 0x20) {
        fail(i, fmt::format("unescaped control character {} in a string", printable(c)));
      }
      if (c != '\\') {
        out_ += c;
        ++i;
        continue;
      }
      if (i + 1 >= text_.size()) fail(start, "unterminated string");
      const char e = text_[i + 1];
      if (std::string_view("\"\\/bfnrt").find(e) != std::string_view::npos) {
        out_ += text_.substr(i, 2);
        i += 2;
        continue;
      }
      if (e != 'u') fail(i, fmt::format("invalid escape '\\{}' in a string", e));
      const long unit = hex4(text_, i + 2);
      if (unit < 0) fail(i, "'\\u' must be followed by four hex digits");
      if (unit >= 0xD800 && unit <= 0xDBFF) {
        const long low = text_.substr(i + 6, 2) == "\\u" ? hex4(text_, i + 8) : -1;
        if (low < 0xDC00 || low > 0xDFFF) fail(i, "unpaired UTF-16 surrogate in a \\u escape");
        const long code_point = 0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00);
        out_ += fmt::format("\\U{:08X}", code_point);
        i += 12;
        continue;
      }
      if (unit >= 0xDC00 && unit <= 0xDFFF) fail(i, "unpaired UTF-16 surrogate in a \\u escape");
      out_ += text_.substr(i, 6);
      i += 6;
    }
  }

  std::string_view text_;
  const std::string& source_;
  std::string out_;
};

// Turns the yaml-cpp tree into Values, checking at each node's position in the text that the
// node is JSON: '{' / '[' for collections, '"' for strings, JSON literals for plain scalars.
class Converter {
 public:
  Converter(std::string_view text, std::shared_ptr<const std::string> source)
      : text_(text), source_(std::move(source)) {}

  Value convert(const YAML::Node& node, std::string path) {
    Value v;
    const YAML::Mark mark = node.Mark();
    const size_t pos = mark.pos >= 0 ? static_cast<size_t>(mark.pos) : text_.size();
    switch (node.Type()) {
      case YAML::NodeType::Null:
        if (text_.substr(pos, 4) != "null") fail(mark, "expected a value");
        ValueAccess::init(v, Kind::Null, std::move(path), source_);
        return v;
      case YAML::NodeType::Scalar: {
        const std::string& s = node.Scalar();
        if (node.Tag() == "!") {  // quoted
          if (pos >= text_.size() || text_[pos] != '"') fail(mark, "strings need double quotes");
          ValueAccess::init(v, Kind::String, std::move(path), source_);
          ValueAccess::set_text(v, s);
          return v;
        }
        if (text_.substr(pos, s.size()) != s) fail(mark, "expected a value");
        if (s == "true" || s == "false") {
          ValueAccess::init(v, Kind::Bool, std::move(path), source_);
          ValueAccess::set_bool(v, s == "true");
          return v;
        }
        if (!is_number_literal(s)) {
          fail(mark, fmt::format("'{}' is not a JSON value (strings need double quotes)", s));
        }
        ValueAccess::init(v, Kind::Number, std::move(path), source_);
        ValueAccess::set_text(v, s);
        return v;
      }
      case YAML::NodeType::Sequence: {
        if (pos >= text_.size() || text_[pos] != '[') fail(mark, "expected a value");
        ValueAccess::init(v, Kind::Array, path, source_);
        size_t index = 0;
        for (const YAML::Node& item : node) {
          ValueAccess::append(v, {}, convert(item, fmt::format("{}[{}]", path, index++)));
        }
        return v;
      }
      case YAML::NodeType::Map: {
        if (pos >= text_.size() || text_[pos] != '{') fail(mark, "expected a value");
        ValueAccess::init(v, Kind::Object, path, source_);
        std::unordered_set<std::string> seen;
        for (const auto& member : node) {
          const YAML::Node& key = member.first;
          const YAML::Mark key_mark = key.Mark();
          const size_t key_pos = key_mark.pos >= 0 ? static_cast<size_t>(key_mark.pos) : 0;
          if (!key.IsScalar() || key.Tag() != "!" || key_pos >= text_.size() ||
              text_[key_pos] != '"') {
            fail(key_mark, "object keys must be strings in double quotes");
          }
          const std::string& name = key.Scalar();
          std::string child_path = detail::key_path(path, name);
          if (!seen.insert(name).second) {
            AUTOTP_FAIL("{}: duplicate key {} (line {})", *source_, child_path, key_mark.line + 1);
          }
          ValueAccess::append(v, name, convert(member.second, std::move(child_path)));
        }
        return v;
      }
      case YAML::NodeType::Undefined:
        break;
    }
    fail(mark, "expected a value");
  }

 private:
  [[noreturn]] void fail(const YAML::Mark& mark, const std::string& what) const {
    AUTOTP_FAIL("{}: invalid JSON at line {}, column {}: {}", *source_, mark.line + 1,
                mark.column + 1, what);
  }

  std::string_view text_;
  std::shared_ptr<const std::string> source_;
};

}  // namespace

Value parse(std::string_view text, std::string_view source) {
  auto source_name = std::make_shared<const std::string>(source);
  const std::string yaml_text = Lexer(text, *source_name).run();
  YAML::Node root;
  try {
    root = YAML::Load(yaml_text);
  } catch (const YAML::Exception& e) {
    AUTOTP_FAIL("{}: invalid JSON at line {}, column {}: {}", *source_name, e.mark.line + 1,
                e.mark.column + 1, e.msg);
  }
  // The document must start at the first token (YAML would skip a "---" marker).
  const size_t first = yaml_text.find_first_not_of(" \t\r\n");
  if (root.Mark().pos < 0 || static_cast<size_t>(root.Mark().pos) != first) {
    Lexer(text, *source_name).fail(first, "expected a value");
  }
  return Converter(yaml_text, source_name).convert(root, "$");
}

Value parse_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  AUTOTP_CHECK(in.good(), "cannot open JSON file '{}': {}", path, std::strerror(errno));
  std::ostringstream buffer;
  buffer << in.rdbuf();
  AUTOTP_CHECK(!in.bad(), "cannot read JSON file '{}': {}", path, std::strerror(errno));
  return parse(buffer.str(), path);
}

}  // namespace autotp::json
