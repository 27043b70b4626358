// core/io/json: parsing real HF config files, strict JSON (what YAML would accept is rejected),
// exact 64-bit integers, escapes, key-path errors, and a writer matching Python's json.dumps.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>
#include <sstream>

#include "core/io/json.h"

namespace autotp {
namespace {

const std::string kDataDir = AUTOTP_TEST_DATA_DIR;

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// The message of the autotp::Error that `fn` throws ("" when it throws none).
template <typename Fn>
std::string error_of(Fn&& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

#define EXPECT_ERROR_CONTAINS(statement, needle)                                                  \
  do {                                                                                            \
    const std::string message_ = error_of([&] { (void)(statement); });                            \
    EXPECT_NE(message_.find(needle), std::string::npos)                                           \
        << "expected an autotp::Error containing '" << (needle) << "', got '" << message_ << "'"; \
  } while (0)

TEST(JsonParse, ReadsATinyLlamaConfigWithTypedGetters) {
  const std::string path = kDataDir + "/tiny_llama_config.json";
  const json::Value config = json::parse_file(path);
  EXPECT_EQ(config.source(), path);
  EXPECT_EQ(config.get<std::string>("model_type"), "llama");
  EXPECT_EQ(config.get<int64_t>("vocab_size"), 128256);
  EXPECT_EQ(config.get<int>("num_key_value_heads"), 2);
  EXPECT_EQ(config.get<double>("rms_norm_eps"), 1e-05);
  EXPECT_EQ(config.get<double>("rope_theta"), 500000.0);
  EXPECT_EQ(config.get<bool>("tie_word_embeddings"), true);
  EXPECT_EQ(config.get<bool>("attention_bias"), false);
  EXPECT_TRUE(config["pad_token_id"].is_null());
  EXPECT_EQ(config.get_or<int64_t>("pad_token_id", -1), -1);        // null -> fallback
  EXPECT_EQ(config.get_or<int64_t>("sliding_window", 4096), 4096);  // missing -> fallback
  EXPECT_EQ(config.get_or<int64_t>("bos_token_id", -1), 128000);    // present -> value
  const json::Value& eos = config["eos_token_id"];
  ASSERT_TRUE(eos.is_array());
  ASSERT_EQ(eos.size(), 3u);
  EXPECT_EQ(eos[2].as_int64(), 128009);
  EXPECT_EQ(eos[2].path(), "$.eos_token_id[2]");
  const json::Value& rope = config["rope_scaling"];
  EXPECT_EQ(rope.get<std::string>("rope_type"), "llama3");
  EXPECT_EQ(rope.get<double>("factor"), 32.0);
  EXPECT_EQ(rope.get<int64_t>("original_max_position_embeddings"), 8192);
  EXPECT_EQ(rope.keys(),
            (std::vector<std::string>{"factor", "high_freq_factor", "low_freq_factor",
                                      "original_max_position_embeddings", "rope_type"}));
  EXPECT_EQ(config.keys().front(), "architectures");  // document order is kept
  EXPECT_EQ(config.keys().back(), "vocab_size");
}

TEST(JsonParse, PrettyDumpOfAConfigReproducesPythonsJsonDumpsByteForByte) {
  // tests/data/tiny_llama_config.json was written by json.dumps(indent=2, sort_keys=True).
  const std::string text = read_text(kDataDir + "/tiny_llama_config.json");
  ASSERT_FALSE(text.empty());
  EXPECT_EQ(json::parse(text).dump(2) + "\n", text);
}

TEST(JsonParse, DecodesEveryEscapeIncludingSurrogatePairsToUtf8) {
  const json::Value v = json::parse(
      R"({"s": "q\"b\\s\/b\bf\fn\nr\rt\t|\u0041\u00e9\u20ac\ud83d\ude00|\u0000|raw é😀"})");
  const std::string expected = std::string("q\"b\\s/b\bf\fn\nr\rt\t|A\xc3\xa9\xe2\x82\xac") +
                               "\xf0\x9f\x98\x80|" + std::string(1, '\0') +
                               "|raw \xc3\xa9\xf0\x9f\x98\x80";
  EXPECT_EQ(v["s"].as_string(), expected);
  // Written back (UTF-8 raw, control characters escaped) and read again: the same string.
  EXPECT_EQ(json::parse(v.dump())["s"].as_string(), expected);
  EXPECT_EQ(v.dump(),
            "{\"s\":\"q\\\"b\\\\s/b\\bf\\fn\\nr\\rt\\t|A\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80|"
            "\\u0000|raw \xc3\xa9\xf0\x9f\x98\x80\"}");
}

TEST(JsonParse, ReadsSixtyFourBitIntegersExactly) {
  const json::Value v = json::parse(
      R"({"max": 9223372036854775807, "min": -9223372036854775808,
          "umax": 18446744073709551615, "beyond": 18446744073709551616, "neg_zero": -0})");
  EXPECT_EQ(v["max"].as_int64(), std::numeric_limits<int64_t>::max());
  EXPECT_EQ(v["min"].as_int64(), std::numeric_limits<int64_t>::min());
  EXPECT_EQ(v["umax"].as_uint64(), std::numeric_limits<uint64_t>::max());
  EXPECT_EQ(v["neg_zero"].as_uint64(), 0u);
  EXPECT_EQ(v["beyond"].as_double(), 18446744073709551616.0);
  EXPECT_EQ(v["beyond"].number_text(), "18446744073709551616");
  EXPECT_ERROR_CONTAINS(v["umax"].as_int64(), "$.umax: 18446744073709551615 is out of the int64");
  EXPECT_ERROR_CONTAINS(v["beyond"].as_uint64(), "out of the uint64 range");
  EXPECT_ERROR_CONTAINS(v["min"].as_uint64(), "expected a non-negative integer");
  EXPECT_ERROR_CONTAINS(v.get<int32_t>("max"), "$.max: 9223372036854775807 is out of range");
  // Written back, every digit survives.
  EXPECT_EQ(v.dump(),
            R"({"max":9223372036854775807,"min":-9223372036854775808,)"
            R"("umax":18446744073709551615,"beyond":18446744073709551616,"neg_zero":-0})");
}

TEST(JsonParse, MissingKeysAndWrongTypesNameTheSourceAndTheKeyPath) {
  const json::Value v = json::parse(
      R"({"model": {"layers": [{"name": "q"}, {"name": 7}], "odd.key": {"x": 1.5}}})", "cfg.json");
  EXPECT_ERROR_CONTAINS(v["model"]["layers"][1]["name"].as_string(),
                        "cfg.json: $.model.layers[1].name: expected a string, got the number 7");
  EXPECT_ERROR_CONTAINS(v["model"]["layers"][0]["size"],
                        "cfg.json: missing key "
                        "$.model.layers[0].size");
  EXPECT_ERROR_CONTAINS(
      v["model"]["odd.key"]["x"].as_int64(),
      "cfg.json: $.model[\"odd.key\"].x: expected an integer, got the number 1.5");
  EXPECT_ERROR_CONTAINS(v["model"]["layers"][2], "$.model.layers: index 2 is out of range");
  EXPECT_ERROR_CONTAINS(v["model"]["layers"]["name"],
                        "$.model.layers: expected an object, got an "
                        "array");
  EXPECT_ERROR_CONTAINS(v["model"].as_bool(), "$.model: expected a boolean, got an object");
  EXPECT_ERROR_CONTAINS(v["model"]["layers"][0]["name"].as_double(),
                        "expected a number, got the string \"q\"");
}

TEST(JsonParse, RejectsEverythingThatIsNotStrictJson) {
  // Each of these is valid YAML (or YAML-ish) that a plain yaml-cpp load would accept or misread.
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"", "empty"},
      {"   \n ", "empty"},
      {R"({"a": 1,})", "trailing comma"},
      {R"([1, 2,])", "trailing comma"},
      {R"({"a": 1} # comment)", "unexpected content after the end"},
      {"{\"a\": 1 # comment\n}", "unexpected character '#'"},
      {R"({'a': 1})", "unexpected character '''"},
      {R"({a: 1})", "object keys must be strings in double quotes"},
      {R"({"a": })", "expected a value"},
      {R"({"a"})", "expected a value"},
      {R"([1, , 2])", "expected a value"},
      {R"(["a": 1])", "expected a value"},
      {R"({"a": 1} {"b": 2})", "unexpected content after the end"},
      {R"({"a": 1}})", "unexpected"},
      {R"({"a": [1, 2})", "invalid JSON"},
      {R"({"a": "unterminated)", "unterminated string"},
      {R"({"a": "\x41"})", "invalid escape '\\x'"},
      {R"({"a": "\u12"})", "four hex digits"},
      {R"({"a": "\ud83d"})", "unpaired UTF-16 surrogate"},
      {R"({"a": "\ude00"})", "unpaired UTF-16 surrogate"},
      {"{\"a\": \"tab\there\"}", "unescaped control character"},
      {R"({"a": tru})", "'tru' is not a JSON value"},
      {R"({"a": True})", "unexpected character 'T'"},
      {R"({"a": 01})", "'01' is not a JSON value"},
      {R"({"a": +1})", "'+1' is not a JSON value"},
      {R"({"a": .5})", "'.5' is not a JSON value"},
      {R"({"a": 1.})", "'1.' is not a JSON value"},
      {R"({"a": 1e})", "'1e' is not a JSON value"},
      {R"([1 2])", "'1 2' is not a JSON value"},
      {R"({"a": ~})", "unexpected character '~'"},
      {R"({"a": &x 1})", "unexpected character '&'"},
      {R"({"a": !!str 1})", "unexpected character '!'"},
      {"a: 1", "expected a value"},
      {R"({"a" 1})", "invalid JSON"},
      {R"({"a":: 1})", "expected a value"},
      {"---\n{\"a\": 1}", "line 1, column 1: expected a value"},
      {R"({"a": 1, "a": 2})", "duplicate key $.a"},
      {R"({"x": {"a.b": 1, "a.b": 2}})", "duplicate key $.x[\"a.b\"]"},
  };
  for (const auto& [text, needle] : cases) {
    const std::string message = error_of([&] { json::parse(text, "bad.json"); });
    EXPECT_NE(message.find(needle), std::string::npos)
        << "input: " << text << "\nexpected an error containing: " << needle
        << "\ngot: " << message;
    EXPECT_EQ(message.rfind("bad.json: ", 0), 0u) << "input: " << text << "\ngot: " << message;
  }
}

TEST(JsonParse, ErrorsGiveTheLineAndColumn) {
  EXPECT_ERROR_CONTAINS(json::parse("{\n  \"a\": 1,\n  \"b\": tru\n}", "x.json"),
                        "x.json: invalid JSON at line 3, column 8: 'tru' is not a JSON value");
  EXPECT_ERROR_CONTAINS(json::parse("[\n1,\n2,\n]", "x.json"), "line 3, column 2: trailing comma");
}

TEST(JsonParse, AcceptsJsonLayoutsThatYamlReadsDifferently) {
  // A key with a newline before its colon, tabs, CRLF, no spaces at all.
  const json::Value a = json::parse("{\"a\"\n  : 1,\t\"b\":[true,false,null],\r\n\"c\":{}}");
  EXPECT_EQ(a.get<int>("a"), 1);
  EXPECT_EQ(a["b"].size(), 3u);
  EXPECT_TRUE(a["b"][2].is_null());
  EXPECT_EQ(a["c"].size(), 0u);
  // Top-level scalars and strings that look like other YAML types.
  EXPECT_EQ(json::parse("42").as_int64(), 42);
  EXPECT_EQ(json::parse("\"yes\"").as_string(), "yes");
  EXPECT_EQ(json::parse("\"null\"").as_string(), "null");
  EXPECT_EQ(json::parse("\"1.5\"").as_string(), "1.5");
  EXPECT_TRUE(json::parse(" null ").is_null());
  // Number forms.
  const json::Value n = json::parse("[-0, 1E+2, 0.5e-3, -12.25, 1e400, NaN, Infinity, -Infinity]");
  EXPECT_EQ(n[1].as_double(), 100.0);
  EXPECT_EQ(n[2].as_double(), 0.0005);
  EXPECT_EQ(n[3].as_double(), -12.25);
  EXPECT_ERROR_CONTAINS(n[4].as_double(), "$[4]: 1e400 is out of the double range");
  EXPECT_TRUE(std::isnan(n[5].as_double()));
  EXPECT_EQ(n[7].as_double(), -std::numeric_limits<double>::infinity());
  EXPECT_FALSE(n[1].is_integer());
  EXPECT_TRUE(n[0].is_integer());
  // Long keys (yaml-cpp limits keys to 1024 characters: up to 1022 bytes pass, longer ones
  // fail with a clear message rather than a confusing parser error).
  const std::string key(1022, 'k');
  EXPECT_EQ(json::parse("{\"" + key + "\": 3}").get<int>(key), 3);
  EXPECT_ERROR_CONTAINS(json::parse("{\"" + key + "kk\": 3}"), "longer than 1022 bytes");
  // Deep nesting.
  std::string deep;
  for (int i = 0; i < 100; ++i)
    deep += "[";
  deep += "7";
  for (int i = 0; i < 100; ++i)
    deep += "]";
  const json::Value* cur = nullptr;
  const json::Value d = json::parse(deep);
  cur = &d;
  for (int i = 0; i < 100; ++i)
    cur = &(*cur)[0];
  EXPECT_EQ(cur->as_int64(), 7);
  EXPECT_ERROR_CONTAINS(json::parse(std::string(600, '[') + std::string(600, ']')),
                        "nested deeper than 512 levels");
}

TEST(JsonParse, ParseFileNamesAFileThatCannotBeOpened) {
  EXPECT_ERROR_CONTAINS(json::parse_file("/nonexistent/dir/config.json"),
                        "cannot open JSON file '/nonexistent/dir/config.json'");
}

TEST(JsonWrite, PrettyAndCompactOutputMatchPythonsJsonDumps) {
  json::Value v = json::Value::object();
  v.set("name", "a\"b\\c\n\t\x01\x1f/\xc3\xa9\xf0\x9f\x98\x80");
  v.set("list", json::Value::array()
                    .push(1)
                    .push(2.5)
                    .push(nullptr)
                    .push(true)
                    .push(json::Value::array())
                    .push(json::Value::object()));
  v.set("nested", json::Value::object().set(
                      "k", json::Value::array().push(json::Value::object().set("x", -0.0))));
  v.set("big", std::numeric_limits<uint64_t>::max());
  v.set("neg", std::numeric_limits<int64_t>::min());
  // Both expectations are Python's output for the same value:
  //   json.dumps(v, ensure_ascii=False, indent=2) and separators=(",", ":").
  EXPECT_EQ(v.dump(2), R"({
  "name": "a\"b\\c\n\t\u0001\u001f/é😀",
  "list": [
    1,
    2.5,
    null,
    true,
    [],
    {}
  ],
  "nested": {
    "k": [
      {
        "x": -0.0
      }
    ]
  },
  "big": 18446744073709551615,
  "neg": -9223372036854775808
})");
  EXPECT_EQ(v.dump(), R"({"name":"a\"b\\c\n\t\u0001\u001f/é😀","list":[1,2.5,null,true,[],{}],)"
                      R"("nested":{"k":[{"x":-0.0}]},"big":18446744073709551615,)"
                      R"("neg":-9223372036854775808})");
  EXPECT_EQ(json::parse(v.dump(2)), v);
  EXPECT_EQ(json::parse(v.dump()), v);
}

TEST(JsonWrite, DoublesUseTheShortestTextThatReadsBackExactly) {
  // Texts as Python's repr() writes them.
  const std::vector<std::pair<double, std::string>> cases = {
      {0.1, "0.1"},
      {1e-05, "1e-05"},
      {100.0, "100.0"},
      {-0.0, "-0.0"},
      {1.0 / 3.0, "0.3333333333333333"},
      {5e-324, "5e-324"},
      {1.7976931348623157e308, "1.7976931348623157e+308"},
      {1e16, "1e+16"},
      {123456789012.0, "123456789012.0"},
      {0.30000000000000004, "0.30000000000000004"},
  };
  for (const auto& [value, text] : cases) {
    const json::Value v(value);
    EXPECT_EQ(v.dump(), text);
    const double back = json::parse(v.dump()).as_double();
    EXPECT_EQ(std::memcmp(&back, &value, sizeof(double)), 0) << text;
  }
  EXPECT_EQ(json::Value(std::nan("")).dump(), "NaN");
  EXPECT_EQ(json::Value(-std::numeric_limits<double>::infinity()).dump(), "-Infinity");
  EXPECT_EQ(json::Value(2.5f).dump(), "2.5");
}

TEST(JsonWrite, SetReplacesAKeyInPlaceAndBuiltValuesKnowTheirPaths) {
  json::Value v = json::Value::object();
  v.set("a", 1).set("b", 2).set("a", "one");
  EXPECT_EQ(v.keys(), (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(v.dump(), R"({"a":"one","b":2})");
  json::Value inner = json::Value::object().set("x", json::Value::array().push(true));
  v.set("model.cfg", inner);
  EXPECT_EQ(v["model.cfg"]["x"][0].path(), "$[\"model.cfg\"].x[0]");
  EXPECT_EQ(v.source(), "<json>");
  EXPECT_ERROR_CONTAINS(v["model.cfg"]["x"][0].as_string(),
                        "<json>: $[\"model.cfg\"].x[0]: expected a string, got true");
  EXPECT_ERROR_CONTAINS(json::Value(3).set("k", 1), "cannot set a key on the number 3");
  EXPECT_ERROR_CONTAINS(json::Value::object().push(1), "cannot append to an object");
}

TEST(JsonValue, EqualityComparesNumbersByValueAndObjectsInOrder) {
  EXPECT_EQ(json::parse("[1, 1.0, -0, 1e2]"), json::parse("[1.0, 1, 0, 100]"));
  EXPECT_FALSE(json::parse("18446744073709551615") == json::parse("18446744073709551614"));
  EXPECT_FALSE(json::parse("9223372036854775807") == json::parse("-1"));
  EXPECT_FALSE(json::parse(R"({"a":1,"b":2})") == json::parse(R"({"b":2,"a":1})"));
  EXPECT_FALSE(json::parse("NaN") == json::parse("NaN"));
  EXPECT_FALSE(json::parse("\"1\"") == json::parse("1"));
}

}  // namespace
}  // namespace autotp
