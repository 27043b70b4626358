// JSON values: a tree with ordered object keys, read by parse() (yaml-cpp underneath, checked to
// be strict JSON) and written by dump(); typed getters throw autotp::Error naming source and path.
#pragma once

#include <concepts>
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.h"

namespace autotp::json {

enum class Kind : uint8_t { Null, Bool, Number, String, Array, Object };

// "null", "a boolean", "a number", "a string", "an array", "an object".
std::string_view kind_name(Kind kind);

// One JSON value. Numbers keep their JSON text, so 64-bit integers (signed or unsigned) read
// back exactly and doubles round-trip. A parsed value knows its source (a file name) and its
// path ("$.layers[2].name") and names both in every error.
class Value {
 public:
  Value() = default;  // null
  Value(std::nullptr_t) {}
  Value(bool value);
  template <std::integral T>
  requires(!std::same_as<T, bool>) Value(T value)
      : kind_(Kind::Number), text_(std::to_string(value)) {}
  // Shortest text that reads back as the same double ("0.1", "1e-05", "2.0"); non-finite
  // values are written as NaN, Infinity and -Infinity, as Python's json module does.
  Value(double value);
  Value(std::string value);
  Value(std::string_view value) : Value(std::string(value)) {}
  Value(const char* value) : Value(std::string(value)) {}

  static Value object();
  static Value array();

  // ---- building -----------------------------------------------------------
  // Object: sets `key` (replacing an existing key in place, else appending). Returns *this.
  Value& set(std::string_view key, Value value);
  // Array: appends `value`. Returns *this.
  Value& push(Value value);

  // ---- inspecting ---------------------------------------------------------
  Kind kind() const { return kind_; }
  bool is_null() const { return kind_ == Kind::Null; }
  bool is_bool() const { return kind_ == Kind::Bool; }
  bool is_number() const { return kind_ == Kind::Number; }
  bool is_string() const { return kind_ == Kind::String; }
  bool is_array() const { return kind_ == Kind::Array; }
  bool is_object() const { return kind_ == Kind::Object; }
  // True for a number written as an integer (no fraction, no exponent).
  bool is_integer() const;

  // Number of array elements or object members; throws for scalars.
  size_t size() const;
  // Object members (throw unless this is an object).
  bool contains(std::string_view key) const { return find(key) != nullptr; }
  const Value* find(std::string_view key) const;        // nullptr when missing
  const Value& operator[](std::string_view key) const;  // throws naming the missing key path
  const Value& operator[](const char* key) const { return (*this)[std::string_view(key)]; }
  const std::vector<std::string>& keys() const;  // in document / insertion order
  // Array elements (throws unless this is an array, or when out of range).
  const Value& at(size_t index) const;
  template <std::integral I>
  requires(!std::same_as<I, bool>) const Value& operator[](I index) const {
    if constexpr (std::signed_integral<I>) {
      AUTOTP_CHECK(index >= 0, "{}: {}: negative index {}", source(), path_, index);
    }
    return at(static_cast<size_t>(index));
  }
  // Array elements, or object values in key order.
  const std::vector<Value>& elements() const;

  bool as_bool() const;
  int64_t as_int64() const;    // an integer within the int64 range
  uint64_t as_uint64() const;  // a non-negative integer within the uint64 range
  double as_double() const;    // any number (big integers round to the nearest double)
  const std::string& as_string() const;
  const std::string& number_text() const;  // a number as written, e.g. "1e-05"

  // Typed read: bool, any integral type (range-checked), float/double, std::string.
  template <typename T>
  T as() const;
  // (*this)[key].as<T>()
  template <typename T>
  T get(std::string_view key) const {
    return (*this)[key].as<T>();
  }
  // `fallback` when the key is missing or null, else (*this)[key].as<T>().
  template <typename T>
  T get_or(std::string_view key, T fallback) const {
    const Value* v = find(key);
    return (v == nullptr || v->is_null()) ? fallback : v->as<T>();
  }

  // Where this value sits: "$" for the root, then ".name", "[\"odd.key\"]" and "[3]" steps.
  const std::string& path() const { return path_; }
  // The file (or other source) the value was parsed from; "<json>" for values built in code.
  const std::string& source() const;

  // Compact (indent < 0: no spaces at all, like serde_json) or pretty (like Python's
  // json.dumps(indent=indent): one member per line, ", " never, ": " after keys). Strings are
  // UTF-8 with '"', '\\' and control characters escaped.
  std::string dump(int indent = -1) const;

  // Same kind and contents; numbers compare by value (1 == 1.0), object members in order.
  bool operator==(const Value& other) const;

 private:
  friend struct ValueAccess;  // the parser fills values directly (json_parse.cpp)

  // Sets path and source of this value and (recursively) of its children.
  void relocate(const std::string& path, const std::shared_ptr<const std::string>& source);
  [[noreturn]] void fail_type(std::string_view expected) const;
  void check_kind(Kind kind, std::string_view what) const;
  // "number 1.5", "string \"ab\"", "an object" ... for error messages.
  std::string describe() const;

  Kind kind_ = Kind::Null;
  bool bool_ = false;
  std::string text_;               // number text or string contents
  std::vector<std::string> keys_;  // object keys, parallel to items_
  std::vector<Value> items_;       // array elements or object values
  std::string path_ = "$";
  std::shared_ptr<const std::string> source_;
};

// Parses one JSON document (RFC 8259; NaN, Infinity and -Infinity are also read, as Python
// writes them). Errors name `source`, the line and the column. Duplicate keys are an error.
Value parse(std::string_view text, std::string_view source = "<json string>");
// Reads and parses a file; errors name the file.
Value parse_file(const std::string& path);

// Appends `text` as a quoted JSON string to `out` (the escaping dump() uses).
void append_quoted(std::string& out, std::string_view text);

namespace detail {
// The path of member `key` of the object at `parent`: parent + ".key" or "[\"odd.key\"]".
std::string key_path(const std::string& parent, std::string_view key);
}  // namespace detail

// ---- typed reads -------------------------------------------------------------

template <typename T>
T Value::as() const {
  if constexpr (std::same_as<T, bool>) {
    return as_bool();
  } else if constexpr (std::same_as<T, std::string>) {
    return as_string();
  } else if constexpr (std::floating_point<T>) {
    return static_cast<T>(as_double());
  } else if constexpr (std::signed_integral<T>) {
    const int64_t v = as_int64();
    AUTOTP_CHECK(v >= std::numeric_limits<T>::min() && v <= std::numeric_limits<T>::max(),
                 "{}: {}: {} is out of range (expected {} to {})", source(), path_, text_,
                 std::numeric_limits<T>::min(), std::numeric_limits<T>::max());
    return static_cast<T>(v);
  } else {
    static_assert(std::unsigned_integral<T>, "Value::as<T>: unsupported type");
    const uint64_t v = as_uint64();
    AUTOTP_CHECK(v <= std::numeric_limits<T>::max(),
                 "{}: {}: {} is out of range (expected 0 to {})", source(), path_, text_,
                 std::numeric_limits<T>::max());
    return static_cast<T>(v);
  }
}

}  // namespace autotp::json
