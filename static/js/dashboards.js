// Dashboard charts: every figure with a data-chart attribute names the JSON data island
// (<script type="application/json">, written by the template's json_script) that holds its
// chart; this file draws them with the vendored Chart.js, and again after each htmx swap
// (the filters replace the page's panel). The table under each chart holds the same numbers.
(function () {
  "use strict";

  if (typeof window.Chart === "undefined") return;
  var charts = new Map();

  function readData(id) {
    var source = document.getElementById(id);
    if (!source) return null;
    try {
      return JSON.parse(source.textContent);
    } catch (error) {
      return null;
    }
  }

  function formatValue(value, percent) {
    if (value === null || value === undefined) return "–";
    if (percent) return (value * 100).toFixed(1) + "%";
    return Number.isInteger(value) ? String(value) : value.toFixed(3);
  }

  function build(holder, data) {
    var canvas = holder.querySelector("canvas");
    if (!canvas) return null;
    var percent = !!data.percent;
    var bar = data.kind === "bar";
    var yScale = {
      title: { display: true, text: data.yLabel },
      ticks: {
        callback: function (value) {
          return percent ? Math.round(value * 100) + "%" : value;
        },
      },
    };
    if (data.yMin !== null && data.yMin !== undefined) yScale.min = data.yMin;
    if (data.yMax !== null && data.yMax !== undefined) yScale.max = data.yMax;
    return new window.Chart(canvas, {
      type: bar ? "bar" : "line",
      data: {
        labels: data.labels,
        datasets: data.datasets.map(function (set) {
          return {
            label: set.label,
            data: set.data,
            borderColor: set.colour,
            backgroundColor: bar ? set.colour : set.colour,
            borderWidth: bar ? 0 : 2,
            pointRadius: data.labels.length < 60 ? 2 : 0,
            spanGaps: false,
            tension: 0,
          };
        }),
      },
      options: {
        animation: false,
        maintainAspectRatio: false,
        interaction: { mode: "index", intersect: false },
        plugins: {
          legend: { display: data.datasets.length > 1 },
          tooltip: {
            callbacks: {
              label: function (item) {
                return item.dataset.label + ": " + formatValue(item.raw, percent);
              },
            },
          },
        },
        scales: {
          x: { title: { display: true, text: data.xLabel } },
          y: yScale,
        },
      },
    });
  }

  function drawAll() {
    // Charts whose canvas left the page (swapped out) are destroyed.
    charts.forEach(function (chart, holder) {
      if (!document.body.contains(holder)) {
        chart.destroy();
        charts.delete(holder);
      }
    });
    document.querySelectorAll("[data-chart]").forEach(function (holder) {
      if (charts.has(holder)) return;
      var data = readData(holder.getAttribute("data-chart"));
      if (!data) return;
      var chart = build(holder, data);
      if (chart) charts.set(holder, chart);
    });
  }

  document.body.addEventListener("htmx:afterSettle", drawAll);
  drawAll();
})();
