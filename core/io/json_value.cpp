// json::Value: construction, typed getters with errors naming source and key path, equality,
// and the writer (compact like serde_json, pretty like Python's json.dumps(indent=n)).
#include <charconv>
#include <cmath>
#include <system_error>

#include "core/io/json.h"

namespace autotp::json {

namespace {

bool is_identifier(std::string_view key) {
  if (key.empty() || (key[0] >= '0' && key[0] <= '9')) return false;
  for (char c : key) {
    const bool ok =
        (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
    if (!ok) return false;
  }
  return true;
}

std::string index_path(const std::string& parent, size_t index) {
  return fmt::format("{}[{}]", parent, index);
}

// -?digits, as JSON writes integers.
bool is_integer_text(std::string_view text) {
  if (!text.empty() && text[0] == '-') text.remove_prefix(1);
  if (text.empty()) return false;
  for (char c : text) {
    if (c < '0' || c > '9') return false;
  }
  return true;
}

// True when all of `text` parses as a T (integer text within T's range).
template <typename T>
bool parses_as(const std::string& text, T& value) {
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  return ec == std::errc() && end == text.data() + text.size();
}

const std::string& built_source() {
  static const std::string kBuilt = "<json>";
  return kBuilt;
}

void append_indent(std::string& out, int indent, int level) {
  out += '\n';
  out.append(static_cast<size_t>(indent) * static_cast<size_t>(level), ' ');
}

void dump_to(std::string& out, const Value& v, int indent, int level) {
  switch (v.kind()) {
    case Kind::Null:
      out += "null";
      return;
    case Kind::Bool:
      out += v.as_bool() ? "true" : "false";
      return;
    case Kind::Number:
      out += v.number_text();
      return;
    case Kind::String:
      append_quoted(out, v.as_string());
      return;
    case Kind::Array:
    case Kind::Object:
      break;
  }
  const bool is_object = v.is_object();
  const std::vector<Value>& items = v.elements();
  out += is_object ? '{' : '[';
  for (size_t i = 0; i < items.size(); ++i) {
    if (i > 0) out += ',';
    if (indent >= 0) append_indent(out, indent, level + 1);
    if (is_object) {
      append_quoted(out, v.keys()[i]);
      out += indent >= 0 ? ": " : ":";
    }
    dump_to(out, items[i], indent, level + 1);
  }
  if (indent >= 0 && !items.empty()) append_indent(out, indent, level);
  out += is_object ? '}' : ']';
}

}  // namespace

std::string detail::key_path(const std::string& parent, std::string_view key) {
  if (is_identifier(key)) return parent + "." + std::string(key);
  std::string out = parent + "[";
  append_quoted(out, key);
  return out + "]";
}

std::string_view kind_name(Kind kind) {
  switch (kind) {
    case Kind::Null:
      return "null";
    case Kind::Bool:
      return "a boolean";
    case Kind::Number:
      return "a number";
    case Kind::String:
      return "a string";
    case Kind::Array:
      return "an array";
    case Kind::Object:
      return "an object";
  }
  AUTOTP_ASSERT(false, "unknown json kind {}", static_cast<int>(kind));
}

void append_quoted(std::string& out, std::string_view text) {
  out += '"';
  for (char c : text) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          out += fmt::format("\\u{:04x}", static_cast<unsigned>(c));
        } else {
          out += c;  // UTF-8 bytes pass through unchanged
        }
    }
  }
  out += '"';
}

// ---- construction ----------------------------------------------------------------

Value::Value(bool value) : kind_(Kind::Bool), bool_(value) {}

Value::Value(double value) : kind_(Kind::Number) {
  if (std::isnan(value)) {
    text_ = "NaN";
  } else if (std::isinf(value)) {
    text_ = value > 0 ? "Infinity" : "-Infinity";
  } else {
    text_ = fmt::format("{}", value);  // the shortest text that reads back exactly
    if (text_.find_first_of(".e") == std::string::npos) text_ += ".0";  // stays a float
  }
}

Value::Value(std::string value) : kind_(Kind::String), text_(std::move(value)) {}

Value Value::object() {
  Value v;
  v.kind_ = Kind::Object;
  return v;
}

Value Value::array() {
  Value v;
  v.kind_ = Kind::Array;
  return v;
}

Value& Value::set(std::string_view key, Value value) {
  check_kind(Kind::Object, "set a key on");
  value.relocate(detail::key_path(path_, key), source_);
  for (size_t i = 0; i < keys_.size(); ++i) {
    if (keys_[i] == key) {
      items_[i] = std::move(value);
      return *this;
    }
  }
  keys_.emplace_back(key);
  items_.push_back(std::move(value));
  return *this;
}

Value& Value::push(Value value) {
  check_kind(Kind::Array, "append to");
  value.relocate(index_path(path_, items_.size()), source_);
  items_.push_back(std::move(value));
  return *this;
}

void Value::relocate(const std::string& path, const std::shared_ptr<const std::string>& source) {
  path_ = path;
  source_ = source;
  for (size_t i = 0; i < items_.size(); ++i) {
    items_[i].relocate(is_object() ? detail::key_path(path_, keys_[i]) : index_path(path_, i),
                       source);
  }
}

// ---- inspection ------------------------------------------------------------------

const std::string& Value::source() const {
  return source_ ? *source_ : built_source();
}

std::string Value::describe() const {
  switch (kind_) {
    case Kind::Null:
      return "null";
    case Kind::Bool:
      return bool_ ? "true" : "false";
    case Kind::Number:
      return "the number " + text_;
    case Kind::String: {
      std::string quoted;
      append_quoted(quoted, text_.size() > 40 ? text_.substr(0, 40) + "..." : text_);
      return "the string " + quoted;
    }
    case Kind::Array:
    case Kind::Object:
      return std::string(kind_name(kind_));
  }
  AUTOTP_ASSERT(false, "unknown json kind {}", static_cast<int>(kind_));
}

void Value::fail_type(std::string_view expected) const {
  AUTOTP_FAIL("{}: {}: expected {}, got {}", source(), path_, expected, describe());
}

void Value::check_kind(Kind kind, std::string_view what) const {
  AUTOTP_CHECK(kind_ == kind, "{}: {}: cannot {} {} (expected {})", source(), path_, what,
               describe(), kind_name(kind));
}

bool Value::is_integer() const {
  return kind_ == Kind::Number && is_integer_text(text_);
}

size_t Value::size() const {
  if (kind_ != Kind::Array && kind_ != Kind::Object) fail_type("an array or an object");
  return items_.size();
}

const Value* Value::find(std::string_view key) const {
  if (kind_ != Kind::Object) fail_type("an object");
  for (size_t i = 0; i < keys_.size(); ++i) {
    if (keys_[i] == key) return &items_[i];
  }
  return nullptr;
}

const Value& Value::operator[](std::string_view key) const {
  const Value* v = find(key);
  AUTOTP_CHECK(v != nullptr, "{}: missing key {}", source(), detail::key_path(path_, key));
  return *v;
}

const std::vector<std::string>& Value::keys() const {
  if (kind_ != Kind::Object) fail_type("an object");
  return keys_;
}

const Value& Value::at(size_t index) const {
  if (kind_ != Kind::Array) fail_type("an array");
  AUTOTP_CHECK(index < items_.size(),
               "{}: {}: index {} is out of range for an array of {} elements", source(), path_,
               index, items_.size());
  return items_[index];
}

const std::vector<Value>& Value::elements() const {
  if (kind_ != Kind::Array && kind_ != Kind::Object) fail_type("an array or an object");
  return items_;
}

bool Value::as_bool() const {
  if (kind_ != Kind::Bool) fail_type("a boolean");
  return bool_;
}

int64_t Value::as_int64() const {
  if (!is_integer()) fail_type("an integer");
  int64_t v = 0;
  AUTOTP_CHECK(parses_as(text_, v), "{}: {}: {} is out of the int64 range", source(), path_, text_);
  return v;
}

uint64_t Value::as_uint64() const {
  if (!is_integer()) fail_type("a non-negative integer");
  if (text_[0] == '-') {
    if (text_.find_first_not_of("-0") == std::string::npos) return 0;  // "-0"
    fail_type("a non-negative integer");
  }
  uint64_t v = 0;
  AUTOTP_CHECK(parses_as(text_, v), "{}: {}: {} is out of the uint64 range", source(), path_,
               text_);
  return v;
}

double Value::as_double() const {
  if (kind_ != Kind::Number) fail_type("a number");
  double v = 0;
  AUTOTP_CHECK(parses_as(text_, v), "{}: {}: {} is out of the double range", source(), path_,
               text_);
  return v;
}

const std::string& Value::as_string() const {
  if (kind_ != Kind::String) fail_type("a string");
  return text_;
}

const std::string& Value::number_text() const {
  if (kind_ != Kind::Number) fail_type("a number");
  return text_;
}

std::string Value::dump(int indent) const {
  std::string out;
  dump_to(out, *this, indent, 0);
  return out;
}

bool Value::operator==(const Value& other) const {
  if (kind_ != other.kind_) return false;
  switch (kind_) {
    case Kind::Null:
      return true;
    case Kind::Bool:
      return bool_ == other.bool_;
    case Kind::String:
      return text_ == other.text_;
    case Kind::Number:
      if (text_ == other.text_) return text_ != "NaN";
      if (is_integer() && other.is_integer()) {
        // Exact comparison where both fit int64, or both fit uint64.
        int64_t a = 0, b = 0;
        if (parses_as(text_, a) && parses_as(other.text_, b)) return a == b;
        uint64_t ua = 0, ub = 0;
        if (parses_as(text_, ua) && parses_as(other.text_, ub)) return ua == ub;
      }
      return as_double() == other.as_double();
    case Kind::Array:
      return items_ == other.items_;
    case Kind::Object:
      return keys_ == other.keys_ && items_ == other.items_;
  }
  return false;
}

}  // namespace autotp::json
