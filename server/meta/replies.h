// Kept replies: what a change answered, stored in the change's own batch
// (replies: client | seq -> time | kind | result), so that a retry of the
// same call gets the same answer without applying the change again
// (MetaServer::Call; docs/metadata-server.md, "Retries").
//
// One encoding per kind of answer. Decoding checks the kind and the
// length: a record of another kind, or cut short, is refused.
#ifndef RANGEFS_SERVER_META_REPLIES_H_
#define RANGEFS_SERVER_META_REPLIES_H_

#include <cstdint>
#include <string>
#include <utility>

#include "absl/strings/string_view.h"
#include "server/meta/meta_server.h"

namespace rangefs::meta {

// The answer of a change that returns only its status.
struct Done {};
// A new or linked entry and its directory's attributes.
using EntryResult = std::pair<Attr, Attr>;

std::string EncodeKept(const Timespec& when, const Done& r);
std::string EncodeKept(const Timespec& when, const Attr& r);
std::string EncodeKept(const Timespec& when, const EntryResult& r);
std::string EncodeKept(const Timespec& when, const UnlinkResult& r);
std::string EncodeKept(const Timespec& when, const MapResult& r);
std::string EncodeKept(const Timespec& when, uint64_t r);

bool DecodeKept(absl::string_view v, Done* out);
bool DecodeKept(absl::string_view v, Attr* out);
bool DecodeKept(absl::string_view v, EntryResult* out);
bool DecodeKept(absl::string_view v, UnlinkResult* out);
bool DecodeKept(absl::string_view v, MapResult* out);
bool DecodeKept(absl::string_view v, uint64_t* out);

// When the reply `v` was kept (any kind); false if `v` is malformed.
bool KeptAt(absl::string_view v, Timespec* when);

}  // namespace rangefs::meta

#endif  // RANGEFS_SERVER_META_REPLIES_H_
