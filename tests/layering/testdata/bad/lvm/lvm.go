package lvm
