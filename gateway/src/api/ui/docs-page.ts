// The API docs page: swagger-ui (served from the swagger-ui-dist package by
// api/static.ts) rendering /api/v1/openapi.yaml. No CDN, no inline script
// (the page's Content-Security-Policy allows scripts from this origin only).

export const DOCS_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>l7mp gateway REST API</title>
<link rel="stylesheet" href="/api/v1/docs/swagger-ui.css">
<link rel="icon" type="image/png" href="/api/v1/docs/favicon-32x32.png" sizes="32x32">
<link rel="icon" type="image/png" href="/api/v1/docs/favicon-16x16.png" sizes="16x16">
</head>
<body>
<noscript>The API docs need JavaScript. The spec itself is at <a href="/api/v1/openapi.yaml">/api/v1/openapi.yaml</a>.</noscript>
<div id="swagger-ui"></div>
<script src="/api/v1/docs/swagger-ui-bundle.js"></script>
<script src="/api/v1/docs/init.js"></script>
</body>
</html>
`;

// validatorUrl: null keeps swagger-ui from sending the spec to
// validator.swagger.io. The spec's `servers: [{url: /}]` makes "Try it out"
// call this same controller; "Authorize" takes the bearer token.
export const DOCS_INIT_JS = `'use strict';
window.ui = SwaggerUIBundle({
  url: '/api/v1/openapi.yaml',
  dom_id: '#swagger-ui',
  deepLinking: true,
  validatorUrl: null,
  presets: [SwaggerUIBundle.presets.apis],
  layout: 'BaseLayout',
});
`;
