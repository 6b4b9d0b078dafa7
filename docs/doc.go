// Package docs holds the operator documentation of nanomdm: the operations
// guide, the quickstart, the OpenAPI description of the HTTP routes, an
// example enrollment profile and deployment examples. It has no code; its
// tests check the documents against the code (flags, routes, status codes)
// and run tools/cmdr.py and the quickstart's simulator steps.
package docs
