// MapReader: typed getters with key tracking, unknown-key errors with suggestions, ignored
// DeepSpeed key warnings; apply_override for --set.
#include "engine/yaml_reader.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdlib>

#include "core/error.h"

namespace autotp {

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j)
    prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t substitute = prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1);
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, substitute});
    }
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

std::string closest_match(const std::string& key, const std::vector<std::string>& candidates) {
  std::string best;
  size_t best_distance = 0;
  for (const std::string& c : candidates) {
    const size_t d = edit_distance(key, c);
    if (best.empty() || d < best_distance) {
      best = c;
      best_distance = d;
    }
  }
  return best;
}

namespace {

std::string join_path(const std::string& path, const std::string& key) {
  return path.empty() ? key : path + "." + key;
}

bool is_auto_node(const YAML::Node& n) {
  return n.IsScalar() && n.Scalar() == "auto";
}

bool is_absent(const YAML::Node& n) {
  return !n.IsDefined() || n.IsNull() || is_auto_node(n);
}

std::string describe_node(const YAML::Node& n) {
  if (n.IsScalar()) return "'" + n.Scalar() + "'";
  if (n.IsSequence()) return "a list";
  if (n.IsMap()) return "a map";
  return "nothing";
}

std::optional<int64_t> parse_int(const std::string& s) {
  int64_t v = 0;
  const char* first = s.data();
  const char* last = s.data() + s.size();
  if (first != last && *first == '+') ++first;
  const auto [ptr, ec] = std::from_chars(first, last, v);
  if (ec != std::errc() || ptr != last || first == last) return std::nullopt;
  return v;
}

std::optional<double> parse_float(const std::string& s) {
  if (s.empty()) return std::nullopt;
  char* end = nullptr;
  const double v = std::strtod(s.c_str(), &end);
  if (end != s.c_str() + s.size() || !std::isfinite(v)) return std::nullopt;
  return v;
}

}  // namespace

MapReader::MapReader(const YAML::Node& node, std::string path, const YamlSource& source)
    : path_(std::move(path)), source_(&source), self_(node) {
  if (!node.IsDefined() || node.IsNull() || is_auto_node(node)) return;
  if (!node.IsMap()) {
    AUTOTP_FAIL("{}: '{}' must be a map of keys, got {}", where(), path_.empty() ? "config" : path_,
                describe_node(node));
  }
  for (auto it = node.begin(); it != node.end(); ++it) {
    const YAML::Node key_node = it->first;
    if (!key_node.IsScalar()) {
      AUTOTP_FAIL("{}: keys under '{}' must be plain names", where_node(path_, key_node),
                  path_.empty() ? "config" : path_);
    }
    const std::string key = key_node.Scalar();
    if (const Entry* previous = find(key)) {
      AUTOTP_FAIL("{}: key '{}' appears twice (first at {})",
                  where_node(join_path(path_, key), key_node), join_path(path_, key),
                  where_node(join_path(path_, key), previous->key_node));
    }
    entries_.push_back(Entry{key, key_node, it->second});
  }
}

const MapReader::Entry* MapReader::find(const std::string& key) const {
  for (const Entry& e : entries_) {
    if (e.key == key) return &e;
  }
  return nullptr;
}

const MapReader::Entry* MapReader::lookup(const std::string& key) {
  if (std::find(known_.begin(), known_.end(), key) == known_.end()) known_.push_back(key);
  const Entry* e = find(key);
  return e != nullptr && !is_absent(e->value) ? e : nullptr;
}

bool MapReader::present(const std::string& key) {
  return lookup(key) != nullptr;
}

bool MapReader::is_auto(const std::string& key) const {
  const Entry* e = find(key);
  return e != nullptr && is_auto_node(e->value);
}

std::string MapReader::where_node(const std::string& full, const YAML::Node& node) const {
  for (const std::string& o : source_->overridden) {
    if (full == o || full.rfind(o + ".", 0) == 0) return "--set " + o;
  }
  const YAML::Mark m = node.Mark();
  if (m.is_null()) return source_->name;
  return fmt::format("{} line {}", source_->name, m.line + 1);
}

std::string MapReader::where(const std::string& key) const {
  const Entry* e = find(key);
  return where_node(full_key(key), e != nullptr ? e->key_node : self_);
}

std::string MapReader::where() const {
  return self_.IsDefined() ? where_node(path_, self_) : source_->name;
}

std::string MapReader::full_key(const std::string& key) const {
  return join_path(path_, key);
}

void MapReader::fail(const std::string& key, const std::string& message) const {
  AUTOTP_FAIL("{}: '{}' {}", where(key), full_key(key), message);
}

void MapReader::warn(const std::string& key, const std::string& message) const {
  if (source_->warnings != nullptr) {
    source_->warnings->push_back(fmt::format("{}: '{}' {}", where(key), full_key(key), message));
  }
}

void MapReader::type_error(const Entry& e, const char* expected) const {
  AUTOTP_FAIL("{}: '{}' must be {}, got {}", where_node(full_key(e.key), e.key_node),
              full_key(e.key), expected, describe_node(e.value));
}

std::optional<int64_t> MapReader::get_int(const std::string& key) {
  const Entry* e = lookup(key);
  if (e == nullptr) return std::nullopt;
  if (!e->value.IsScalar()) type_error(*e, "an integer");
  const std::optional<int64_t> v = parse_int(e->value.Scalar());
  if (!v) type_error(*e, "an integer");
  return v;
}

std::optional<double> MapReader::get_float(const std::string& key) {
  const Entry* e = lookup(key);
  if (e == nullptr) return std::nullopt;
  if (!e->value.IsScalar()) type_error(*e, "a number");
  const std::optional<double> v = parse_float(e->value.Scalar());
  if (!v) type_error(*e, "a number");
  return v;
}

std::optional<bool> MapReader::get_bool(const std::string& key) {
  const Entry* e = lookup(key);
  if (e == nullptr) return std::nullopt;
  bool v = false;
  if (!e->value.IsScalar() || !YAML::convert<bool>::decode(e->value, v)) {
    type_error(*e, "true or false");
  }
  return v;
}

std::optional<std::string> MapReader::get_string(const std::string& key) {
  const Entry* e = lookup(key);
  if (e == nullptr) return std::nullopt;
  if (!e->value.IsScalar()) type_error(*e, "a string");
  return e->value.Scalar();
}

std::optional<std::vector<std::string>> MapReader::get_string_list(const std::string& key) {
  const Entry* e = lookup(key);
  if (e == nullptr) return std::nullopt;
  if (!e->value.IsSequence()) type_error(*e, "a list of strings");
  std::vector<std::string> out;
  for (const YAML::Node& item : e->value) {
    if (!item.IsScalar()) type_error(*e, "a list of strings");
    out.push_back(item.Scalar());
  }
  return out;
}

std::optional<std::vector<double>> MapReader::get_float_list(const std::string& key) {
  const Entry* e = lookup(key);
  if (e == nullptr) return std::nullopt;
  if (!e->value.IsSequence()) type_error(*e, "a list of numbers");
  std::vector<double> out;
  for (const YAML::Node& item : e->value) {
    const std::optional<double> v = item.IsScalar() ? parse_float(item.Scalar()) : std::nullopt;
    if (!v) type_error(*e, "a list of numbers");
    out.push_back(*v);
  }
  return out;
}

MapReader MapReader::get_map(const std::string& key) {
  const Entry* e = lookup(key);
  if (e == nullptr) return MapReader(YAML::Node(), full_key(key), *source_);
  if (!e->value.IsMap()) type_error(*e, "a map");
  return MapReader(e->value, full_key(key), *source_);
}

YAML::Node MapReader::get_node(const std::string& key) {
  const Entry* e = lookup(key);
  return e != nullptr ? e->value : YAML::Node(YAML::NodeType::Undefined);
}

void MapReader::ignore(const std::vector<std::string>& keys) {
  ignored_.insert(ignored_.end(), keys.begin(), keys.end());
}

bool MapReader::is_ignored(const std::string& key) const {
  for (const std::string& pattern : ignored_) {
    if (!pattern.empty() && pattern.back() == '*') {
      if (key.rfind(pattern.substr(0, pattern.size() - 1), 0) == 0) return true;
    } else if (key == pattern) {
      return true;
    }
  }
  return false;
}

void MapReader::finish() {
  for (const Entry& e : entries_) {
    if (std::find(known_.begin(), known_.end(), e.key) != known_.end()) continue;
    if (is_ignored(e.key)) {
      if (source_->warnings != nullptr) {
        const std::string full = full_key(e.key);
        source_->warnings->push_back(
            fmt::format("{}: '{}' is a DeepSpeed setting that autotp does not implement; ignored",
                        where_node(full, e.key_node), full));
      }
      continue;
    }
    fail_on_unknown_key(e);
  }
}

void MapReader::expect_only(const std::vector<std::string>& keys) {
  known_.insert(known_.end(), keys.begin(), keys.end());
  for (const Entry& e : entries_) {
    if (std::find(known_.begin(), known_.end(), e.key) != known_.end() || is_ignored(e.key)) {
      continue;
    }
    fail_on_unknown_key(e);
  }
}

void MapReader::fail_on_unknown_key(const Entry& e) const {
  const std::string full = full_key(e.key);
  // Suggest a key autotp reads; an ignored DeepSpeed key only when it is strictly closer.
  std::vector<std::string> ignored_names;
  for (const std::string& pattern : ignored_) {
    if (pattern.empty() || pattern.back() != '*') ignored_names.push_back(pattern);
  }
  std::string suggestion = closest_match(e.key, known_);
  const std::string ignored_suggestion = closest_match(e.key, ignored_names);
  if (suggestion.empty() ||
      (!ignored_suggestion.empty() &&
       edit_distance(e.key, ignored_suggestion) < edit_distance(e.key, suggestion))) {
    suggestion = ignored_suggestion;
  }
  AUTOTP_FAIL("{}: unknown key '{}'{}", where_node(full, e.key_node), full,
              suggestion.empty()
                  ? std::string(" (this section takes no keys)")
                  : fmt::format(" (closest known key: '{}')", join_path(path_, suggestion)));
}

std::string apply_override(YAML::Node& root, const std::string& assignment) {
  const size_t eq = assignment.find('=');
  AUTOTP_CHECK(eq != std::string::npos && eq > 0,
               "--set '{}': expected key.path=value (e.g. --set train.steps=20)", assignment);
  const std::string path = assignment.substr(0, eq);
  const std::string text = assignment.substr(eq + 1);
  std::vector<std::string> segments;
  size_t start = 0;
  while (true) {
    const size_t dot = path.find('.', start);
    segments.push_back(
        path.substr(start, dot == std::string::npos ? std::string::npos : dot - start));
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  for (const std::string& s : segments) {
    AUTOTP_CHECK(!s.empty(), "--set '{}': the key path '{}' has an empty segment", assignment,
                 path);
  }
  YAML::Node value;
  try {
    value = text.empty() ? YAML::Node(YAML::NodeType::Null) : YAML::Load(text);
  } catch (const YAML::Exception& e) {
    AUTOTP_FAIL("--set '{}': the value '{}' is not valid YAML: {}", assignment, text, e.msg);
  }
  if (!root.IsDefined() || root.IsNull()) root = YAML::Node(YAML::NodeType::Map);
  AUTOTP_CHECK(root.IsMap(), "--set '{}': the config is not a map of keys", assignment);
  YAML::Node cur;
  cur.reset(root);
  std::string walked;
  for (size_t i = 0; i + 1 < segments.size(); ++i) {
    const std::string& seg = segments[i];
    const std::string parent = walked;
    walked = join_path(walked, seg);
    YAML::Node next;
    if (cur.IsSequence()) {
      const std::optional<int64_t> index = parse_int(seg);
      AUTOTP_CHECK(index && *index >= 0 && static_cast<size_t>(*index) < cur.size(),
                   "--set '{}': '{}' is a list of {} entries; '{}' is not an index into it",
                   assignment, parent, cur.size(), seg);
      next.reset(cur[static_cast<size_t>(*index)]);
    } else {
      YAML::Node child = cur[seg];
      if (!child.IsDefined() || child.IsNull()) cur[seg] = YAML::Node(YAML::NodeType::Map);
      next.reset(cur[seg]);
    }
    AUTOTP_CHECK(next.IsMap() || next.IsSequence(),
                 "--set '{}': '{}' holds {} and cannot take the key '{}'", assignment, walked,
                 describe_node(next), segments[i + 1]);
    cur.reset(next);
  }
  const std::string& last = segments.back();
  if (cur.IsSequence()) {
    const std::optional<int64_t> index = parse_int(last);
    AUTOTP_CHECK(index && *index >= 0 && static_cast<size_t>(*index) < cur.size(),
                 "--set '{}': '{}' is a list of {} entries; '{}' is not an index into it",
                 assignment, walked, cur.size(), last);
    cur[static_cast<size_t>(*index)] = value;
  } else {
    cur[last] = value;
  }
  return path;
}

}  // namespace autotp
