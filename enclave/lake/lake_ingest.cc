// Uploads: an owner's CSV arrives in chunks (begin, chunks of complete records, end); rows are
// validated against the schema as they come, staged in sealed pages, and join the dataset at the
// end, when the manifest names the new pages.
#include <algorithm>

#include <fmt/format.h>

#include "common/lake_abi/csv.h"
#include "enclave/lake/lake.h"
#include "enclave/lake/lake_internal.h"

namespace medstream::lake {

using namespace internal;

Result<crypto::Bytes> Lake::On(Session& s, const IngestBeginRequest& m, Output*) {
  const Role role = RoleOf(s);
  const std::string& name = m.dataset;
  const Schema& schema = m.schema;
  const uint32_t k = m.k;
  const PrivacyPolicy& policy = m.policy;
  if (role != Role::kAdmin && role != Role::kOwner) {
    return Denied(std::string("ingest refused: role ") + std::string(RoleName(role)) +
                  " may not upload (owners only)");
  }
  if (name.empty() || name.size() > kMaxDatasetNameBytes) {
    return InvalidArgument(
        fmt::format("a dataset name of {} bytes: 1 to {}", name.size(), kMaxDatasetNameBytes));
  }
  if (!std::all_of(
          name.begin(), name.end(),
          [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; }) ||
      std::isdigit(static_cast<unsigned char>(name[0]))) {
    return InvalidArgument("dataset name '" + name +
                           "': letters, digits and _ only, not starting with a digit");
  }
  if (k < 1) return InvalidArgument("k must be at least 1");
  auto st = std::make_unique<Session::IngestState>();
  st->dataset = name;
  st->k = k;
  st->policy = policy;
  if (Dataset* d = FindDataset(name)) {
    if (d->owner != s.key) return Denied("dataset '" + name + "' belongs to another owner");
    if (d->table->schema().Describe() != schema.Describe()) {
      return InvalidArgument("dataset '" + name + "' has schema " + d->table->schema().Describe() +
                             ", the upload has " + schema.Describe());
    }
    st->id = d->id;
    st->next_page = d->next_page;
  } else {
    crypto::Bytes id(8);
    if (auto rs = crypto::RandomBytes(id); !rs) return std::unexpected(rs.error());
    st->id = crypto::ToHex(id);
    st->fresh = true;
  }
  st->schema = schema;
  st->staging = std::make_unique<Table>(schema);
  s.ingest = std::move(st);
  return crypto::Bytes{};
}

Status Lake::HasUpload(const Session& s) {
  if (!s.ingest)
    return Fail(Error::Code::kFailedPrecondition, "no upload in progress: begin one first");
  return {};
}

Result<crypto::Bytes> Lake::On(Session& s, const IngestChunkRequest& m, Output* out) {
  if (auto st = HasUpload(s); !st) return std::unexpected(st.error());
  Session::IngestState& in = *s.ingest;
  const uint64_t first_line = m.first_line;
  const std::string_view text = m.csv;
  Table chunk(in.schema);
  std::vector<std::string_view> fields;
  std::vector<std::string> scratch;
  bool unterminated = false;
  size_t pos = 0;
  uint64_t line = first_line, bad = 0;
  while (NextRecord(text, &pos, &fields, &scratch, &unterminated)) {
    const uint64_t this_line = line++;
    if (fields.size() == 1 && fields[0].empty()) continue;  // blank line
    Status st =
        unterminated ? InvalidArgument("a quoted field never closes") : chunk.AppendRow(fields);
    if (!st) {
      ++bad;
      if (in.bad_rows.size() < kMaxBadRowsReported)
        in.bad_rows.push_back({this_line, st.error().message()});
    }
  }
  in.bad += bad;
  const Dataset* existing = FindDataset(in.dataset);
  const uint64_t before = in.staging->rows() + (existing ? existing->table->rows() : 0);
  if (before + chunk.rows() > kMaxDatasetRows) {
    return Fail(Error::Code::kResourceExhausted,
                fmt::format("dataset '{}' would pass {} rows (it has {}, this chunk {})",
                            in.dataset, kMaxDatasetRows, before, chunk.rows()));
  }
  // One page per kPageFixedBytes of the rows' fixed-size values: a chunk of empty numeric fields
  // (",\n" lines: 2 bytes of CSV, 16 of doubles) once made a 64 MiB page, more than one lake_load
  // carries, and the lake would not have loaded again.
  size_t row_bytes = 0;
  for (const Column& c : in.schema.columns) {
    row_bytes += c.type == Type::kText || c.type == Type::kCategorical ? 4 : 8;
  }
  const size_t rows_per_page = std::max<size_t>(1, kPageFixedBytes / row_bytes);
  for (size_t from = 0; from < chunk.rows(); from += rows_per_page) {
    const size_t to = std::min(chunk.rows(), from + rows_per_page);
    const uint32_t index = in.next_page++;
    crypto::Bytes page;
    ByteWriter pw(&page);
    pw.Raw(kPageMagic, 4);
    pw.String(in.id);
    pw.U32(index);
    pw.U64(version_ + 1);
    const size_t body = page.size();
    chunk.EncodeRows(from, to, &pw);
    ByteReader pr(crypto::ByteView(page).subspan(body));
    if (auto st = in.staging->AppendPage(&pr); !st) return std::unexpected(st.error());
    MEDSTREAM_TRY(sealed, seal_(page, version_ + 1));
    crypto::Wipe(page);
    Dataset::Page p;
    p.key = PageKey(in.id, index);
    p.hash = crypto::Sha256(sealed);
    p.rows = to - from;
    p.loaded = true;
    in.pages.push_back(p);
    out->writes.push_back({p.key, std::move(sealed)});
  }
  return Encode(IngestChunkReply{chunk.rows(), bad});
}

Result<crypto::Bytes> Lake::On(Session& s, const IngestEndRequest&, Output* out) {
  if (auto st = HasUpload(s); !st) return std::unexpected(st.error());
  Session::IngestState& in = *s.ingest;
  // End: the staged rows join the dataset and the manifest names the new pages.
  Dataset* d = FindDataset(in.dataset);
  if (!d) {
    auto fresh = std::make_unique<Dataset>();
    fresh->id = in.id;
    fresh->name = in.dataset;
    fresh->owner = s.key;
    fresh->k = in.k;
    fresh->policy = in.policy;
    fresh->table = std::make_unique<Table>(in.schema);
    d = fresh.get();
    datasets_[in.dataset] = std::move(fresh);
  } else if (d->owner != s.key) {
    return Denied("dataset '" + in.dataset + "' belongs to another owner");
  }
  const uint64_t stored = in.staging->rows();
  if (d->table->rows() == 0) {
    d->table = std::move(in.staging);  // a new dataset: the staged table is the dataset
  } else {
    crypto::Bytes all;
    ByteWriter aw(&all);
    in.staging->EncodeRows(0, stored, &aw);
    ByteReader ar(all);
    if (auto st = d->table->AppendPage(&ar); !st) return std::unexpected(st.error());
    crypto::Wipe(all);
  }
  d->pages.insert(d->pages.end(), in.pages.begin(), in.pages.end());
  d->next_page = in.next_page;
  // The owner's upload sets the policy (only the owner uploads); spent budgets stay spent.
  d->policy = in.policy;
  d->k = in.k;
  Audit(s, "ingest", in.dataset, fmt::format("{} rows stored, {} refused", stored, in.bad), "ok");
  if (auto st = Persist(out); !st) return std::unexpected(st.error());
  IngestEndReply m{.stored = stored,
                   .refused = in.bad,
                   .bad_rows = std::move(in.bad_rows),
                   .schema = d->table->schema().Describe()};
  s.ingest.reset();
  return Encode(m);
}

}  // namespace medstream::lake
