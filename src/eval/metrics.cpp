#include "cprfl/eval/metrics.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <numeric>
#include <sstream>

#include "cprfl/common/error.h"
#include "cprfl/common/text.h"

namespace cprfl {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

std::string shape_of(const torch::Tensor& t) {
  std::string text = "[";
  for (std::int64_t i = 0; i < t.dim(); ++i) text += (i ? ", " : "") + std::to_string(t.size(i));
  return text + "]";
}

// Mean of the values that are not NaN; NaN when there are none.
double mean_of(const std::vector<double>& values) {
  double sum = 0;
  int count = 0;
  for (double v : values)
    if (!std::isnan(v)) sum += v, ++count;
  return count ? sum / count : kNaN;
}

double f1(double precision, double recall) {
  if (std::isnan(precision) || std::isnan(recall)) return kNaN;
  return precision + recall > 0 ? 2 * precision * recall / (precision + recall) : 0.0;
}

// `predicted` and `positive` are [C][N] (class-major); `evaluated` marks classes with positives.
ThresholdMetrics threshold_metrics(const std::vector<std::vector<char>>& predicted,
                                   const std::vector<std::vector<double>>& positive) {
  ThresholdMetrics m;
  std::int64_t total_correct = 0, total_pred = 0, total_gt = 0;
  std::vector<double> precisions, recalls;
  for (std::size_t c = 0; c < predicted.size(); ++c) {
    std::int64_t pred = 0, correct = 0, gt = 0;
    for (std::size_t i = 0; i < predicted[c].size(); ++i) {
      bool is_positive = positive[c][i] != 0;
      pred += predicted[c][i];
      correct += predicted[c][i] && is_positive;
      gt += is_positive;
    }
    total_correct += correct;
    total_pred += pred;
    total_gt += gt;
    if (gt == 0) continue;  // no positive: left out of the per-class means
    precisions.push_back(pred ? static_cast<double>(correct) / static_cast<double>(pred) : 0.0);
    recalls.push_back(static_cast<double>(correct) / static_cast<double>(gt));
  }
  m.predictions = total_pred;
  m.overall_precision = total_pred ? static_cast<double>(total_correct) / static_cast<double>(total_pred) : 0.0;
  m.overall_recall = total_gt ? static_cast<double>(total_correct) / static_cast<double>(total_gt) : kNaN;
  m.overall_f1 = f1(m.overall_precision, m.overall_recall);
  m.per_class_precision = mean_of(precisions);
  m.per_class_recall = mean_of(recalls);
  m.per_class_f1 = f1(m.per_class_precision, m.per_class_recall);
  return m;
}

std::string class_label(const std::vector<std::string>& names, int c) {
  return names.empty() ? std::to_string(c) : std::to_string(c) + " (" + names[c] + ")";
}

}  // namespace

double average_precision(const std::vector<double>& scores, const std::vector<double>& targets) {
  if (scores.size() != targets.size())
    throw Error("average_precision: " + std::to_string(scores.size()) + " scores but " +
                std::to_string(targets.size()) + " targets");
  double total_positive = 0;
  for (double t : targets) total_positive += t;
  if (total_positive == 0) return kNaN;
  std::vector<std::size_t> order(scores.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return scores[a] > scores[b]; });
  double true_positives = 0, false_positives = 0, previous_recall = 0, ap = 0;
  for (std::size_t i = 0; i < order.size();) {
    // Every image sharing this score is one threshold.
    std::size_t j = i;
    for (; j < order.size() && scores[order[j]] == scores[order[i]]; ++j) {
      true_positives += targets[order[j]];
      false_positives += 1 - targets[order[j]];
    }
    double recall = true_positives / total_positive;
    double precision = true_positives / (true_positives + false_positives);
    ap += (recall - previous_recall) * precision;
    previous_recall = recall;
    i = j;
  }
  return ap;
}

Metrics compute_metrics(const torch::Tensor& scores, const torch::Tensor& targets, const MetricsOptions& options) {
  if (!scores.defined() || !targets.defined()) throw Error("metrics: scores or targets are missing");
  if (scores.dim() != 2 || targets.dim() != 2 || !scores.sizes().equals(targets.sizes())) {
    throw Error("metrics: scores have shape " + shape_of(scores) + " but targets have shape " + shape_of(targets) +
                "; both must be [images, classes] of the same size");
  }
  if (scores.is_complex() || targets.is_complex()) throw Error("metrics: complex scores or targets are not supported");
  const std::int64_t n = scores.size(0), num_classes = scores.size(1);
  if (n == 0 || num_classes == 0) throw Error("metrics: no images or no classes (shape " + shape_of(scores) + ")");
  if (!(options.threshold >= 0 && options.threshold <= 1))
    throw Error("metrics: the threshold must be a probability in [0, 1], got " + std::to_string(options.threshold));
  if (options.top_k < 1) throw Error("metrics: top-k must be at least 1, got " + std::to_string(options.top_k));
  if (!options.train_counts.empty() && static_cast<std::int64_t>(options.train_counts.size()) != num_classes) {
    throw Error("metrics: " + std::to_string(options.train_counts.size()) + " training counts for " +
                std::to_string(num_classes) + " classes");
  }
  if (!options.class_names.empty() && static_cast<std::int64_t>(options.class_names.size()) != num_classes) {
    throw Error("metrics: " + std::to_string(options.class_names.size()) + " class names for " +
                std::to_string(num_classes) + " classes");
  }

  // Class-major copies in double: column c is contiguous.
  torch::Tensor s = scores.detach().to(torch::kCPU, torch::kDouble).t().contiguous();
  torch::Tensor t = targets.detach().to(torch::kCPU, torch::kDouble).t().contiguous();
  const double* sp = s.data_ptr<double>();
  const double* tp = t.data_ptr<double>();
  std::vector<std::vector<double>> score(num_classes), positive(num_classes);
  bool outside_unit = false;
  for (std::int64_t c = 0; c < num_classes; ++c) {
    score[c].assign(sp + c * n, sp + (c + 1) * n);
    positive[c].assign(tp + c * n, tp + (c + 1) * n);
    for (std::int64_t i = 0; i < n; ++i) {
      double v = score[c][i], y = positive[c][i];
      if (std::isnan(v))
        throw Error("metrics: score of image " + std::to_string(i) + ", class " + std::to_string(c) + " is NaN");
      if (y != 0 && y != 1) {
        std::ostringstream value;
        value << y;
        throw Error("metrics: target of image " + std::to_string(i) + ", class " + std::to_string(c) + " is " +
                    value.str() + "; targets must be 0 or 1");
      }
      outside_unit |= v < 0 || v > 1;
    }
  }
  if (outside_unit && !options.logits)
    warn("some scores lie outside [0, 1] but are treated as probabilities; if they are logits, use the logits option (--logits)");

  Metrics m;
  m.num_images = n;
  m.num_classes = num_classes;
  m.threshold = options.threshold;
  m.top_k = options.top_k;
  m.logits = options.logits;
  m.class_names = options.class_names;

  // AP per class on the raw scores (sigmoid is monotone, and skipping it keeps ties exact).
  for (std::int64_t c = 0; c < num_classes; ++c) {
    m.ap.push_back(average_precision(score[c], positive[c]));
    m.positives.push_back(static_cast<std::int64_t>(std::accumulate(positive[c].begin(), positive[c].end(), 0.0)));
    if (m.positives.back() == 0) m.classes_without_positives.push_back(static_cast<int>(c));
  }
  m.map = mean_of(m.ap);
  if (!m.classes_without_positives.empty() && options.warn_missing_positives) {
    std::string ids;
    for (int c : m.classes_without_positives) ids += (ids.empty() ? "" : ", ") + class_label(options.class_names, c);
    warn(std::to_string(m.classes_without_positives.size()) +
         " class(es) have no positive image in the evaluated set and are left out of every mean: " + ids);
  }

  if (!options.train_counts.empty()) {
    m.has_groups = true;
    m.train_counts = options.train_counts;
    m.group_thresholds = options.group_thresholds;
    m.groups = groups_from_counts(options.train_counts, options.group_thresholds);
    for (int g = 0; g < 3; ++g) {
      std::vector<double> aps;
      for (std::int64_t c = 0; c < num_classes; ++c)
        if (static_cast<int>(m.groups[c]) == g) aps.push_back(m.ap[c]);
      m.group_size[g] = static_cast<int>(aps.size());
      m.group_evaluated[g] = static_cast<int>(std::count_if(aps.begin(), aps.end(), [](double v) { return !std::isnan(v); }));
      m.group_map[g] = mean_of(aps);
    }
  }

  // Predictions: probability >= threshold; and the same within each image's top-k.
  std::vector<std::vector<char>> predicted(num_classes, std::vector<char>(n, 0));
  std::vector<std::vector<char>> predicted_top_k(num_classes, std::vector<char>(n, 0));
  std::vector<std::int64_t> rank(num_classes);
  const std::int64_t k = std::min<std::int64_t>(options.top_k, num_classes);
  for (std::int64_t i = 0; i < n; ++i) {
    for (std::int64_t c = 0; c < num_classes; ++c) {
      double p = options.logits ? 1.0 / (1.0 + std::exp(-score[c][i])) : score[c][i];
      predicted[c][i] = p >= options.threshold;
    }
    std::iota(rank.begin(), rank.end(), 0);
    std::partial_sort(rank.begin(), rank.begin() + k, rank.end(), [&](std::int64_t a, std::int64_t b) {
      return score[a][i] > score[b][i] || (score[a][i] == score[b][i] && a < b);
    });
    for (std::int64_t r = 0; r < k; ++r) predicted_top_k[rank[r]][i] = predicted[rank[r]][i];
  }
  m.at_threshold = threshold_metrics(predicted, positive);
  m.at_top_k = threshold_metrics(predicted_top_k, positive);
  return m;
}

namespace {

nlohmann::json pct(double fraction) {
  if (std::isnan(fraction)) return nullptr;
  return fraction * 100.0;
}

nlohmann::json threshold_json(const ThresholdMetrics& m) {
  return {{"op_pct", pct(m.overall_precision)},   {"or_pct", pct(m.overall_recall)},
          {"of1_pct", pct(m.overall_f1)},         {"cp_pct", pct(m.per_class_precision)},
          {"cr_pct", pct(m.per_class_recall)},    {"cf1_pct", pct(m.per_class_f1)},
          {"predictions", m.predictions}};
}

std::string pct_text(double fraction) {
  if (std::isnan(fraction)) return "-";
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%.2f", fraction * 100.0);
  return buffer;
}

}  // namespace

nlohmann::json to_json(const Metrics& m) {
  nlohmann::json out;
  out["units"] = "percent (keys ending in _pct)";
  out["num_images"] = m.num_images;
  out["num_classes"] = m.num_classes;
  out["map_pct"] = pct(m.map);
  if (m.has_groups) {
    nlohmann::json groups;
    for (Group g : {Group::kHead, Group::kMedium, Group::kTail}) {
      int i = static_cast<int>(g);
      out[std::string(group_name(g)) + "_map_pct"] = pct(m.group_map[i]);
      groups[group_name(g)] = {{"map_pct", pct(m.group_map[i])},
                               {"classes", m.group_size[i]},
                               {"classes_with_positives", m.group_evaluated[i]}};
    }
    groups["thresholds"] = {{"head_min", m.group_thresholds.head_min}, {"tail_below", m.group_thresholds.tail_below}};
    out["groups"] = groups;
  }
  out["threshold"] = m.threshold;
  out["scores_are_logits"] = m.logits;
  out["top_k"] = m.top_k;
  out["at_threshold"] = threshold_json(m.at_threshold);
  out["at_top_k"] = threshold_json(m.at_top_k);
  out["classes_without_positives"] = m.classes_without_positives;
  nlohmann::json classes = nlohmann::json::array();
  for (std::int64_t c = 0; c < m.num_classes; ++c) {
    nlohmann::json row = {{"id", c}, {"positives", m.positives[c]}, {"ap_pct", pct(m.ap[c])}};
    if (!m.class_names.empty()) row["name"] = m.class_names[c];
    if (m.has_groups) {
      row["train_count"] = m.train_counts[c];
      row["group"] = group_name(m.groups[c]);
    }
    classes.push_back(row);
  }
  out["classes"] = classes;
  return out;
}

std::string format_report(const Metrics& m) {
  std::ostringstream out;
  char buffer[512];
  out << "images " << m.num_images << ", classes " << m.num_classes << " ("
      << m.num_classes - static_cast<std::int64_t>(m.classes_without_positives.size())
      << " with positives); values in %\n\n";
  out << "mAP  total " << pct_text(m.map);
  if (m.has_groups) {
    for (Group g : {Group::kHead, Group::kMedium, Group::kTail}) {
      int i = static_cast<int>(g);
      out << "   " << group_name(g) << " " << pct_text(m.group_map[i]) << " (" << m.group_evaluated[i] << " classes)";
    }
    out << "\n     groups by training count: head n_c >= " << m.group_thresholds.head_min << ", tail n_c < "
        << m.group_thresholds.tail_below;
  }
  out << "\n\n";
  std::snprintf(buffer, sizeof buffer, "%-22s %7s %7s %7s %7s %7s %7s\n", "", "CP", "CR", "CF1", "OP", "OR", "OF1");
  out << buffer;
  auto row = [&](const std::string& label, const ThresholdMetrics& t) {
    std::snprintf(buffer, sizeof buffer, "%-22s %7s %7s %7s %7s %7s %7s\n", label.c_str(),
                  pct_text(t.per_class_precision).c_str(), pct_text(t.per_class_recall).c_str(),
                  pct_text(t.per_class_f1).c_str(), pct_text(t.overall_precision).c_str(),
                  pct_text(t.overall_recall).c_str(), pct_text(t.overall_f1).c_str());
    out << buffer;
  };
  std::snprintf(buffer, sizeof buffer, "%s >= %.2f", m.logits ? "sigmoid(score)" : "score", m.threshold);
  row(buffer, m.at_threshold);
  row("top-" + std::to_string(m.top_k) + ", same threshold", m.at_top_k);
  out << "\n";

  std::size_t width = 5;
  for (const auto& name : m.class_names) width = std::max(width, name.size());
  int w = static_cast<int>(width);
  std::snprintf(buffer, sizeof buffer, "%4s  %-*s  %7s  %-6s  %9s  %7s\n", "id", w, "class", "n_c", "group", "positives", "AP");
  out << buffer;
  for (std::int64_t c = 0; c < m.num_classes; ++c) {
    std::string name = m.class_names.empty() ? "-" : m.class_names[c];
    std::string count = m.has_groups ? std::to_string(m.train_counts[c]) : "-";
    std::string group = m.has_groups ? group_name(m.groups[c]) : "-";
    std::snprintf(buffer, sizeof buffer, "%4lld  %-*s  %7s  %-6s  %9lld  %7s\n", static_cast<long long>(c), w, name.c_str(),
                  count.c_str(), group.c_str(), static_cast<long long>(m.positives[c]), pct_text(m.ap[c]).c_str());
    out << buffer;
  }
  if (!m.classes_without_positives.empty()) {
    out << "\nleft out of every mean (no positive image): ";
    for (std::size_t i = 0; i < m.classes_without_positives.size(); ++i)
      out << (i ? ", " : "") << class_label(m.class_names, m.classes_without_positives[i]);
    out << "\n";
  }
  return out.str();
}

std::string scores_record_path(const std::string& scores_path) { return scores_path + ".json"; }

nlohmann::json to_json(const ScoresRecord& r) {
  return {{"scores", r.logits ? "logits" : "probabilities"},
          {"shape", r.shape},
          {"classes", r.classes},
          {"targets", r.targets},
          {"model", r.model},
          {"ema", r.ema},
          {"list", r.list},
          {"root", r.root}};
}

ScoresRecord read_scores_record(const std::string& path) {
  nlohmann::json json;
  try {
    json = nlohmann::json::parse(read_text_file(path));
  } catch (const nlohmann::json::exception& e) {
    fail_in(path, std::string("not a JSON scores record: ") + e.what());
  }
  if (!json.is_object()) fail_in(path, "not a JSON scores record (expected an object)");
  ScoresRecord r;
  const auto& kind = json.contains("scores") ? json["scores"] : nlohmann::json();
  if (kind == "logits") r.logits = true;
  else if (kind == "probabilities") r.logits = false;
  else fail_in(path, "\"scores\" must be \"logits\" or \"probabilities\", got " + kind.dump());
  try {
    if (json.contains("shape")) r.shape = json["shape"].get<std::vector<std::int64_t>>();
    if (json.contains("classes")) r.classes = json["classes"].get<std::vector<std::string>>();
    if (json.contains("targets")) r.targets = json["targets"].get<std::string>();
    if (json.contains("model")) r.model = json["model"].get<std::string>();
    if (json.contains("ema")) r.ema = json["ema"].get<bool>();
    if (json.contains("list")) r.list = json["list"].get<std::string>();
    if (json.contains("root")) r.root = json["root"].get<std::string>();
  } catch (const nlohmann::json::exception& e) {
    fail_in(path, std::string("unexpected scores record: ") + e.what());
  }
  return r;
}

}  // namespace cprfl
