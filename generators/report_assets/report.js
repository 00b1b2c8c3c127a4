/* NthLayer reliability report: draws the budget charts described by the page's JSON data with uPlot.
   Generated pages embed this file; it reads the JSON script element "nthlayer-data".
   Deploys are vertical markers, incidents shaded bands, the gate's blocking level a dashed line. */
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("nthlayer-data").textContent);
  var palette = data.palette;
  var charts = [];

  function utc(ts) { return uPlot.tzDate(new Date(ts * 1e3), "Etc/UTC"); }

  function fill(u, hex, alpha) {
    var n = parseInt(hex.slice(1), 16);
    return "rgba(" + (n >> 16) + "," + ((n >> 8) & 255) + "," + (n & 255) + "," + alpha + ")";
  }

  function bands(u, spec) {  // incidents: behind the lines
    var ctx = u.ctx, box = u.bbox, lo = u.scales.x.min, hi = u.scales.x.max;
    ctx.save();
    ctx.fillStyle = fill(u, palette.incident, 0.22);
    (spec.incidents || []).forEach(function (i) {
      var from = Math.max(i.from, lo), to = Math.min(i.to, hi);
      if (to < lo || from > hi || to < from) { return; }
      var x0 = Math.round(u.valToPos(from, "x", true)), x1 = Math.round(u.valToPos(to, "x", true));
      ctx.fillRect(x0, box.top, Math.max(x1 - x0, 2), box.height);
    });
    ctx.restore();
  }

  function markers(u, spec) {  // deploys and the gate's level: over the lines
    var ctx = u.ctx, box = u.bbox, lo = u.scales.x.min, hi = u.scales.x.max;
    ctx.save();
    if (spec.block_below !== null && spec.block_below !== undefined) {
      var y = Math.round(u.valToPos(spec.block_below, "y", true));
      if (y >= box.top && y <= box.top + box.height) {
        ctx.strokeStyle = palette.gate;
        ctx.lineWidth = 1;
        ctx.setLineDash([6, 4]);
        ctx.beginPath(); ctx.moveTo(box.left, y); ctx.lineTo(box.left + box.width, y); ctx.stroke();
        ctx.setLineDash([]);
      }
    }
    ctx.strokeStyle = palette.deploy;
    ctx.lineWidth = 2 * devicePixelRatio;
    (spec.deploys || []).forEach(function (d) {
      if (d.at < lo || d.at > hi) { return; }
      var x = Math.round(u.valToPos(d.at, "x", true));
      ctx.beginPath(); ctx.moveTo(x, box.top); ctx.lineTo(x, box.top + box.height); ctx.stroke();
    });
    ctx.restore();
  }

  function draw(el, spec) {
    var series = [{}];
    spec.lines.forEach(function (line) {
      series.push({label: line.label, stroke: line.color, width: line.width, dash: line.dash,
                   spanGaps: false, points: {show: false}});
    });
    var opts = {
      width: el.clientWidth || 600, height: spec.height, tzDate: utc,
      scales: {x: {time: true, range: [spec.x_min, spec.x_max]},
               y: {range: function (u, min, max) {
                 return [Math.min(0, Math.floor(min / 10) * 10), Math.max(100, Math.ceil(max / 10) * 10)];
               }}},
      axes: [{stroke: palette.text, grid: {stroke: palette.grid}},
             {stroke: palette.text, grid: {stroke: palette.grid}, label: "budget left (%)",
              values: function (u, ticks) { return ticks.map(function (v) { return v + "%"; }); }}],
      legend: {show: spec.legend},
      series: series,
      hooks: {drawClear: [function (u) { bands(u, spec); }], draw: [function (u) { markers(u, spec); }]},
    };
    var chart = new uPlot(opts, [spec.x].concat(spec.lines.map(function (l) { return l.values; })), el);
    chart.nthlayer = spec;  // what the chart was drawn from, for anyone inspecting the page
    charts.push(chart);
  }

  document.querySelectorAll("[data-chart]").forEach(function (el) {
    draw(el, data.charts[el.getAttribute("data-chart")]);
  });
  window.nthlayerCharts = charts;
})();
