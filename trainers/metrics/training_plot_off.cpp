// write_training_plot in a build without cairo (QAT_PLOTS=OFF, or AUTO where pkg-config found no
// cairo): no plots, a clear error for a caller that did not ask training_plots_available().
#include <stdexcept>

#include "trainers/metrics/training_plot.h"

namespace qat::train {

bool training_plots_available() {
  return false;
}

PlotResult write_training_plot(const std::vector<Record>&, const std::string& path,
                               const PlotOptions&) {
  throw std::runtime_error("write_training_plot: cannot draw " + path +
                           ": this build has no training plots (cairo was not found when it was "
                           "configured; install libcairo2-dev and reconfigure, or see QAT_PLOTS)");
}

}  // namespace qat::train
