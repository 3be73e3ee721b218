#include "common/cluster_config.h"

#include <fstream>
#include <set>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/status.h"

namespace rangefs {
namespace {

bool ValidAddress(absl::string_view a) {
  size_t colon = a.rfind(':');
  uint32_t port = 0;
  return colon != absl::string_view::npos && colon > 0 &&
         absl::SimpleAtoi(a.substr(colon + 1), &port) && port > 0 &&
         port < 65536;
}

}  // namespace

absl::StatusOr<ClusterConfig> ParseClusterConfig(const std::string& text) {
  ClusterConfig c;
  std::set<uint32_t> devices;
  int n = 0;
  for (absl::string_view line : absl::StrSplit(text, absl::ByAnyChar("\n;"))) {
    ++n;
    size_t hash = line.find('#');
    if (hash != absl::string_view::npos) line = line.substr(0, hash);
    std::vector<absl::string_view> w =
        absl::StrSplit(line, absl::ByAnyChar(" \t"), absl::SkipEmpty());
    if (w.empty()) continue;
    auto bad = [&](const std::string& why) {
      return MakeError(
          Errc::kInvalidArgument,
          absl::StrCat("cluster config entry ", n, " '",
                       absl::StripAsciiWhitespace(line), "': ", why));
    };
    if (w[0] == "fs_id" && w.size() == 2) {
      c.fs_id = std::string(w[1]);
    } else if ((w[0] == "lockd" || w[0] == "meta") && w.size() == 2) {
      if (!ValidAddress(w[1])) return bad("want HOST:PORT");
      if (w[0] == "lockd") {
        c.lockd.emplace_back(w[1]);
      } else {
        if (!c.meta.empty()) return bad("only one metadata server");
        c.meta = std::string(w[1]);
      }
    } else if (w[0] == "data" && (w.size() == 4 || w.size() == 5)) {
      DataServerConfig d;
      if (!absl::SimpleAtoi(w[1], &d.device) || !ValidAddress(w[2]) ||
          !absl::SimpleAtoi(w[3], &d.size) || d.size == 0 ||
          (w.size() == 5 &&
           (!absl::ConsumePrefix(&w[4], "bulk=") || !ValidAddress(w[4])))) {
        return bad("want data DEVICE HOST:PORT SIZE [bulk=HOST:PORT]");
      }
      if (w.size() == 5) d.bulk = std::string(w[4]);
      if (!devices.insert(d.device).second) return bad("device listed twice");
      d.address = std::string(w[2]);
      c.data.push_back(d);
    } else {
      return bad("unknown entry");
    }
  }
  if (c.lockd.empty() || c.meta.empty() || c.data.empty()) {
    return MakeError(Errc::kInvalidArgument,
                     "cluster config needs at least one lockd, a meta and a "
                     "data entry");
  }
  return c;
}

absl::StatusOr<ClusterConfig> LoadClusterConfig(const std::string& spec) {
  // Configuration text always has a space ("meta HOST:PORT"); one word is
  // a file name.
  const bool one_word = spec.find_first_of(" \t\n;") == std::string::npos;
  std::ifstream in(spec);
  if (in && one_word) {
    std::stringstream s;
    s << in.rdbuf();
    return ParseClusterConfig(s.str());
  }
  if (one_word) {
    return MakeError(Errc::kNotFound,
                     "cannot read cluster configuration file " + spec);
  }
  return ParseClusterConfig(spec);
}

std::string ClusterConfig::ToString() const {
  std::string s;
  if (!fs_id.empty()) absl::StrAppend(&s, "fs_id ", fs_id, "\n");
  for (const std::string& l : lockd) absl::StrAppend(&s, "lockd ", l, "\n");
  absl::StrAppend(&s, "meta ", meta, "\n");
  for (const DataServerConfig& d : data) {
    absl::StrAppend(&s, "data ", d.device, " ", d.address, " ", d.size);
    if (!d.bulk.empty()) absl::StrAppend(&s, " bulk=", d.bulk);
    absl::StrAppend(&s, "\n");
  }
  return s;
}

uint32_t ShardOf(uint64_t ino, uint8_t kind, uint32_t shards) {
  // A fixed mix (splitmix64's finaliser): the same on every node.
  uint64_t x = ino * 8 + kind;
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebull;
  x ^= x >> 31;
  return shards == 0 ? 0 : static_cast<uint32_t>(x % shards);
}

}  // namespace rangefs
