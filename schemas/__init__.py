"""JSON Schemas of the state's kinds, installed as package data of `reconciler`."""
