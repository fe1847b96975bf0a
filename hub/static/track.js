// Keeps the tracking page's live part current without a reload, and draws the driver's map when
// the live part has one (#driver-map, from _track/map.html.j2). Without JavaScript the page still
// works: it is plain HTML with forms, and a refresh link.
(function () {
  "use strict";
  var live = document.getElementById("live");
  if (!live || !window.fetch) { return; }
  var url = live.getAttribute("data-live-url");
  var every = Math.max(2, parseInt(live.getAttribute("data-poll"), 10) || 15) * 1000;
  var LEAFLET = "/static/vendor/leaflet/";
  // The map drawn so far; exposed (read only) for the page's browser tests and for debugging.
  var drawn = { map: null, driver: null, destination: null, element: null };
  window.hubTrackMap = drawn;
  var loading = null;

  function stylesheet(href) {
    var link = document.createElement("link");
    link.rel = "stylesheet";
    link.href = href;
    document.head.appendChild(link);
  }

  // Leaflet (vendored, served by the hub) loads only on a page that shows a map.
  function withLeaflet(then) {
    if (window.L) { then(window.L); return; }
    if (!loading) {
      loading = [];
      stylesheet(LEAFLET + "leaflet.css");
      stylesheet("/static/track-map.css");
      var script = document.createElement("script");
      script.src = LEAFLET + "leaflet.js";
      script.onload = function () {
        var waiting = loading;
        loading = null;
        waiting.forEach(function (fn) { fn(window.L); });
      };
      document.head.appendChild(script);
    }
    loading.push(then);
  }

  function number(el, name) {
    var value = el.getAttribute(name);
    return value === null || value === "" ? null : parseFloat(value);
  }

  function forget() {
    if (drawn.map) { drawn.map.remove(); }
    drawn.map = drawn.driver = drawn.destination = drawn.element = null;
  }

  // Leaflet cancels a tile it no longer wants by pointing it at a data: image, which the page's
  // policy refuses (img-src is 'self' and the tile server only); taking the src away cancels the
  // load the same way. (Leaflet 1.9.4's TileLayer, these three methods otherwise unchanged.)
  function tileLayer(L, url, options) {
    var Tiles = L.TileLayer.extend({
      _abortLoading: function () {
        var tiles = this._tiles, key, tile, coords;
        for (key in tiles) {
          if (tiles[key].coords.z !== this._tileZoom) {
            tile = tiles[key].el;
            tile.onload = L.Util.falseFn;
            tile.onerror = L.Util.falseFn;
            if (!tile.complete) {
              coords = tiles[key].coords;
              tile.removeAttribute("src");
              L.DomUtil.remove(tile);
              delete tiles[key];
              this.fire("tileabort", { tile: tile, coords: coords });
            }
          }
        }
      },
      _removeTile: function (key) {
        var tile = this._tiles[key];
        if (!tile) { return; }
        tile.el.removeAttribute("src");
        return L.GridLayer.prototype._removeTile.call(this, key);
      },
      _tileReady: function (coords, err, tile) {
        if (!this._map || (tile && !tile.hasAttribute("src"))) { return; }
        return L.GridLayer.prototype._tileReady.call(this, coords, err, tile);
      }
    });
    return new Tiles(url, options);
  }

  function create(L, el) {
    forget();
    var map = L.map(el, { scrollWheelZoom: false, attributionControl: true });
    var tiles = el.getAttribute("data-tiles");
    if (tiles) {
      // Only the page's origin goes to the tile server, never the link (its path holds the token).
      tileLayer(L, tiles, {
        maxZoom: 19,
        attribution: el.getAttribute("data-attribution") || "",
        referrerPolicy: "origin"
      }).addTo(map);
    }
    drawn.map = map;
    drawn.element = el;
  }

  function draw(L) {
    var el = document.getElementById("driver-map");
    if (!el) { forget(); return; }
    if (drawn.element !== el) { create(L, el); }
    var map = drawn.map;
    var driver = L.latLng(number(el, "data-lat"), number(el, "data-lon"));
    var lat = number(el, "data-dest-lat"), lon = number(el, "data-dest-lon");
    var home = lat === null || lon === null ? null : L.latLng(lat, lon);
    if (!drawn.driver) {
      drawn.driver = L.circleMarker(driver, {
        radius: 9, weight: 3, color: "#ffffff", fillColor: "#1d4ed8", fillOpacity: 1, className: "driver-marker"
      }).addTo(map).bindTooltip(el.getAttribute("data-driver-label") || "");
    } else {
      drawn.driver.setLatLng(driver);
    }
    if (home && !drawn.destination) {
      drawn.destination = L.marker(home, {
        title: el.getAttribute("data-destination-label") || "", alt: el.getAttribute("data-destination-label") || ""
      }).addTo(map);
    } else if (home) {
      drawn.destination.setLatLng(home);
    } else if (drawn.destination) {
      drawn.destination.remove();
      drawn.destination = null;
    }
    map.invalidateSize();
    if (home) {
      map.fitBounds(L.latLngBounds([driver, home]), {
        paddingTopLeft: [32, 56], paddingBottomRight: [32, 24], maxZoom: 16, animate: false
      });
    } else {
      map.setView(driver, 15, { animate: false });
    }
    el.setAttribute("data-drawn", driver.lat + "," + driver.lng);
  }

  function showMap() {
    if (document.getElementById("driver-map")) { withLeaflet(draw); } else { forget(); }
  }

  // The new live part replaces the old one; a map already drawn moves into it (its tiles stay),
  // taking the new part's data, and its markers move.
  function replace(html) {
    var next = document.createElement("div");
    next.innerHTML = html;
    var slot = next.querySelector("#driver-map");
    var old = drawn.element;
    if (slot && old && drawn.map) {
      // Only the part's own attributes: Leaflet's classes on the element stay.
      Array.prototype.slice.call(old.attributes).forEach(function (a) {
        if (a.name.indexOf("data-") === 0 && !slot.hasAttribute(a.name)) { old.removeAttribute(a.name); }
      });
      Array.prototype.forEach.call(slot.attributes, function (a) {
        if (a.name.indexOf("data-") === 0 || a.name.indexOf("aria-") === 0) { old.setAttribute(a.name, a.value); }
      });
      slot.parentNode.replaceChild(old, slot);
    }
    while (live.firstChild) { live.removeChild(live.firstChild); }
    while (next.firstChild) { live.appendChild(next.firstChild); }
    showMap();
  }

  function poll() {
    fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (data) {
        if (data && data.version !== live.getAttribute("data-version")) {
          replace(data.html);
          live.setAttribute("data-version", data.version);
        }
      })
      .catch(function () { /* offline for a moment: try again next time */ })
      .then(function () { window.setTimeout(poll, every); });
  }
  showMap();
  window.setTimeout(poll, every);
}());
