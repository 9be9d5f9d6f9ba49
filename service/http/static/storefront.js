/*! storefront.js: fills a page's slots from the storefront bandit and reports what shoppers do with them.
 *  No dependencies; ES2017. The page stays usable whatever happens: on any error, or when the service takes
 *  longer than the timeout (150 ms by default), the page's own default items stay where they are.
 *
 *  <script src="/static/storefront.js" data-key="pk_..." data-context='{"device": "quest"}' defer></script>
 *  <section data-storefront-slot="hero">
 *    <a href="/games/beat-saber" data-item="beat-saber">...</a>      the page's default: visible
 *    <a href="/games/superhot" data-item="superhot" hidden>...</a>   another candidate: hidden until ranked
 *  </section>
 *
 *  Attributes of the script tag: data-key (a browser key: it may only rank and post events),
 *  data-endpoint (default: where the script came from), data-timeout (ms), data-context (JSON; or set
 *  window.storefrontContext before the script runs). A click inside a ranked slot posts a "click" with
 *  navigator.sendBeacon, so it survives leaving the page. storefront.track("add_to_cart", "beat-saber")
 *  posts an event for the slot that showed that item in this browser session (a later page works too).
 *  Purchases with their revenue belong on your servers, with a backend key.
 */
(function () {
  "use strict";
  var STORE = "storefront.shown";
  var script = document.currentScript;
  var data = (script && script.dataset) || {};

  function parse(text) {
    try { return text ? JSON.parse(text) : null; } catch (e) { return null; }
  }

  var config = {
    key: data.key || "",
    endpoint: (data.endpoint || (script && script.src ? new URL(script.src, location.href).origin : "")).replace(/\/$/, ""),
    timeout: Number(data.timeout) || 150,
    context: parse(data.context) || window.storefrontContext || {}
  };

  function url(path) {
    return config.endpoint + path + (config.key ? "?key=" + encodeURIComponent(config.key) : "");
  }

  function remembered() {
    try { return JSON.parse(sessionStorage.getItem(STORE) || "{}"); } catch (e) { return {}; }
  }

  function remember(item, eventId, slot) {
    try {
      var shown = remembered();
      shown[item] = { event_id: eventId, slot: slot };
      sessionStorage.setItem(STORE, JSON.stringify(shown));
    } catch (e) { /* private mode or full storage: clicks still work on this page */ }
  }

  function send(eventId, slot, event) {
    // text/plain: a "simple" request, so a beacon needs no preflight; the service reads the JSON body anyway.
    var body = JSON.stringify({ event_id: eventId, slot: slot, event: event });
    try {
      if (navigator.sendBeacon && navigator.sendBeacon(url("/v1/reward"), new Blob([body], { type: "text/plain" }))) {
        return true;
      }
      fetch(url("/v1/reward"), { method: "POST", body: body, keepalive: true, headers: { "content-type": "text/plain" } })
        .catch(function () {});
      return true;
    } catch (e) {
      return false;
    }
  }

  function slots() {
    return Array.prototype.slice.call(document.querySelectorAll("[data-storefront-slot]"));
  }

  function apply(page) {
    var byName = {};
    slots().forEach(function (el) { byName[el.getAttribute("data-storefront-slot")] = el; });
    (page.slots || []).forEach(function (decision) {
      var el = byName[decision.slot];
      if (!el || !decision.item) return;  // unfilled: the default stays
      var chosen = null;
      el.querySelectorAll("[data-item]").forEach(function (card) {
        if (card.getAttribute("data-item") === decision.item) chosen = card;
      });
      if (!chosen) return;  // the page cannot show it: keep the default
      el.querySelectorAll("[data-item]").forEach(function (card) {
        card.hidden = card !== chosen;
        card.style.display = card === chosen ? "" : "none";  // also when the page's CSS sets a display on cards
      });
      el.setAttribute("data-event-id", page.event_id);
      el.setAttribute("data-shown", decision.item);
      remember(decision.item, page.event_id, decision.slot);
    });
    document.dispatchEvent(new CustomEvent("storefront:ranked", { detail: page }));
  }

  function rank() {
    var names = slots().map(function (el) { return el.getAttribute("data-storefront-slot"); });
    if (!names.length || typeof fetch !== "function") return Promise.resolve(null);
    var candidates = [];
    slots().forEach(function (el) {
      el.querySelectorAll("[data-item]").forEach(function (card) {
        var id = card.getAttribute("data-item");
        if (candidates.indexOf(id) < 0) candidates.push(id);
      });
    });
    var controller = typeof AbortController === "function" ? new AbortController() : null;
    var timer = controller ? setTimeout(function () { controller.abort(); }, config.timeout) : null;
    return fetch(url("/v1/rank"), {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ context: config.context, slots: names, candidates: candidates }),
      signal: controller ? controller.signal : undefined
    })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (page) { if (page && page.event_id) apply(page); return page; })
      .catch(function () { return null; })  // slow, down, refused: the defaults stay, nothing is thrown
      .finally(function () { if (timer) clearTimeout(timer); });
  }

  document.addEventListener("click", function (e) {
    var el = e.target && e.target.closest ? e.target.closest("[data-storefront-slot][data-event-id]") : null;
    if (el) send(el.getAttribute("data-event-id"), el.getAttribute("data-storefront-slot"), "click");
  }, true);

  window.storefront = {
    ready: null,
    /** Post `event` (a configured event type) for the slot that showed `item` in this session. */
    track: function (event, item) {
      var seen = remembered()[item];
      return seen ? send(seen.event_id, seen.slot, event) : false;
    },
    rank: rank
  };
  window.storefront.ready = document.readyState === "loading"
    ? new Promise(function (resolve) { document.addEventListener("DOMContentLoaded", function () { resolve(rank()); }); })
    : rank();
})();
