"""Datasets: CIFAR-10/100 (python pickle folders), MNIST-format IDX (Fashion-MNIST), image folders."""
