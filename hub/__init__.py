"""The hub: verifies and keeps reads, reconciles cycles, runs meter edits, bills, exports.

It never talks to meters; everything it knows arrived as signed reads from
collectors or as master-data files from the CIS.
"""
