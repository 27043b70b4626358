// Strict, typed reading of one YAML map: every key read is known, the rest are either listed
// DeepSpeed keys (a warning) or errors naming the key, its line and the closest known key.
#pragma once

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <yaml-cpp/yaml.h>

namespace autotp {

// Where the YAML came from, for messages: the file name, which dotted paths --set wrote, and
// where warnings go.
struct YamlSource {
  std::string name = "config";       // file path or "<string>"
  std::set<std::string> overridden;  // dotted paths given with --set
  std::vector<std::string>* warnings = nullptr;
};

// Levenshtein distance (insertions, deletions, substitutions each cost 1).
size_t edit_distance(const std::string& a, const std::string& b);
// The candidate closest to `key` by edit distance (ties: the first); empty if none.
std::string closest_match(const std::string& key, const std::vector<std::string>& candidates);

class MapReader {
 public:
  // `node` must be a map, null or undefined (both read as an empty map); `path` is its dotted
  // path ("" for the root). Duplicate keys are an error.
  MapReader(const YAML::Node& node, std::string path, const YamlSource& source);

  // Each getter declares `key` known. A missing key, a null value and the string "auto" all
  // read as absent (the default applies). A value of the wrong type is an error naming the
  // key path, its line and the expected type.
  bool present(const std::string& key);  // declares the key; true unless absent
  bool is_auto(const std::string& key) const;
  std::optional<int64_t> get_int(const std::string& key);
  std::optional<double> get_float(const std::string& key);
  std::optional<bool> get_bool(const std::string& key);
  std::optional<std::string> get_string(const std::string& key);
  std::optional<std::vector<std::string>> get_string_list(const std::string& key);
  std::optional<std::vector<double>> get_float_list(const std::string& key);
  // A nested map (absent/null/auto -> an empty map).
  MapReader get_map(const std::string& key);
  // The raw node (undefined when absent); the caller checks its shape.
  YAML::Node get_node(const std::string& key);
  // Declares DeepSpeed keys that autotp accepts but does not implement: finish() warns about
  // each one present. A trailing '*' matches a prefix ("stage3_*").
  void ignore(const std::vector<std::string>& keys);

  // Errors for the first key that is neither read nor ignored (with the closest known key),
  // and adds a warning per ignored key present. Call after every getter.
  void finish();
  // Declares `keys` (every key this map may hold beside the ignored ones) and errors now, as
  // finish() would, for the first other key: a misspelled key or section is named before the
  // readers of other keys report what its misspelling left missing.
  void expect_only(const std::vector<std::string>& keys);

  // "config.yaml line 12" (the key's line), or "--set train.steps" for an overridden key.
  std::string where(const std::string& key) const;
  std::string where() const;                           // of the map itself
  std::string full_key(const std::string& key) const;  // "optimizer.params.lr"
  const std::string& path() const { return path_; }
  // Throws "<where>: '<full key>' <message>".
  [[noreturn]] void fail(const std::string& key, const std::string& message) const;
  // Adds the warning "<where>: '<full key>' <message>" to the config's warnings.
  void warn(const std::string& key, const std::string& message) const;

 private:
  struct Entry {
    std::string key;
    YAML::Node key_node;
    YAML::Node value;
  };
  const Entry* find(const std::string& key) const;
  const Entry* lookup(const std::string& key);  // declares; nullptr when absent
  [[noreturn]] void type_error(const Entry& e, const char* expected) const;
  bool is_ignored(const std::string& key) const;
  void fail_on_unknown_key(const Entry& e) const;
  std::string where_node(const std::string& full, const YAML::Node& node) const;

  std::vector<Entry> entries_;
  std::string path_;
  const YamlSource* source_;
  YAML::Node self_;
  std::vector<std::string> known_;
  std::vector<std::string> ignored_;
};

// Applies one "--set a.b.c=value" to `root`: the value is parsed as YAML (so 5, 0.1, true,
// "[0.9, 0.95]" and strings all work; an empty value sets null, i.e. the default). Missing
// maps on the way are created; a numeric segment indexes a list. Returns the dotted path.
std::string apply_override(YAML::Node& root, const std::string& assignment);

}  // namespace autotp
