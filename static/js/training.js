// A training run's charts: one small line chart per metric (loss, accuracy, reward, KL, ...)
// over steps, drawn with the vendored Chart.js from the JSON the run's live part carries
// (<script type="application/json" id="run-series">). The live part is replaced every few
// seconds while the run goes on; the charts are updated in place from each new copy.
(function () {
  "use strict";

  var container = document.getElementById("run-charts");
  if (!container || typeof window.Chart === "undefined") return;
  var empty = document.getElementById("run-charts-empty");
  var charts = {};
  var COLOURS = {
    loss: "#b4443a",
    accuracy: "#1e6337",
    reward: "#1d4b8f",
    kl: "#7a4b00",
  };

  function readSeries() {
    var source = document.getElementById(container.getAttribute("data-series-source"));
    if (!source) return null;
    try {
      return JSON.parse(source.textContent);
    } catch (error) {
      return null;
    }
  }

  function chartFor(name) {
    if (charts[name]) return charts[name];
    var figure = document.createElement("figure");
    figure.className = "run-chart";
    figure.setAttribute("data-metric", name);
    var caption = document.createElement("figcaption");
    caption.textContent = name;
    var canvas = document.createElement("canvas");
    canvas.setAttribute("role", "img");
    canvas.setAttribute("aria-label", name + " over training steps");
    figure.appendChild(caption);
    figure.appendChild(canvas);
    container.appendChild(figure);
    var colour = COLOURS[name] || "#3c4654";
    charts[name] = new window.Chart(canvas, {
      type: "line",
      data: {
        labels: [],
        datasets: [{
          label: name,
          data: [],
          borderColor: colour,
          backgroundColor: colour,
          borderWidth: 1.5,
          pointRadius: 0,
          spanGaps: true,
          tension: 0,
        }],
      },
      options: {
        animation: false,
        maintainAspectRatio: false,
        plugins: { legend: { display: false } },
        scales: {
          x: { type: "linear", title: { display: true, text: "step" } },
          y: { title: { display: false } },
        },
      },
    });
    return charts[name];
  }

  function draw() {
    var data = readSeries();
    if (!data || !data.steps || !data.steps.length) return;
    if (empty) empty.hidden = true;
    Object.keys(data.series).forEach(function (name) {
      var chart = chartFor(name);
      var values = data.series[name];
      chart.data.datasets[0].data = data.steps.map(function (step, i) {
        return { x: step, y: values[i] };
      });
      // Dots while there are few points (a metric reported once still shows), lines after.
      chart.data.datasets[0].pointRadius = data.steps.length < 60 ? 2 : 0;
      chart.update("none");
    });
  }

  // After any swap: with outerHTML the event may name the old element or the new one.
  document.body.addEventListener("htmx:afterSettle", draw);
  draw();
})();
